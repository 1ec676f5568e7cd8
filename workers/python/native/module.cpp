// asgi_bridge._native: the Python worker's native fast path
// (docs/workers-python.md#native-fast-path), used through asgi_bridge/wire.py
// (the codec, codec.cpp), asgi_bridge/transport.py (the ZeroMQ batches,
// bus.cpp) and asgi_bridge/eager.py (the eager start, eager.cpp). The
// pure-Python code stays the reference and the fallback.
#include "native.hpp"

namespace {

// codec.decode, codec.canonical_event, codec.encode_event and codec.payload_size
// (set_fallbacks), which the *_or_codec functions call for what the native ones do
// not take: one call from Python per message either way, no Python-level wrapper.
PyObject* fallbacks[4];

PyObject* set_fallbacks(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 4) {
    return PyErr_Format(PyExc_TypeError, "set_fallbacks(decode, canonical, encode, size)");
  }
  for (int i = 0; i < 4; ++i) Py_XSETREF(fallbacks[i], Py_NewRef(args[i]));
  Py_RETURN_NONE;
}

// `result` of a native function, or when it is None, fallbacks[which](args).
PyObject* or_codec(PyObject* result, int which, PyObject* const* args, Py_ssize_t nargs) {
  if (result != Py_None) return result;
  Py_DECREF(result);
  if (fallbacks[which] == nullptr) {
    return PyErr_Format(PyExc_RuntimeError, "asgi_bridge._native: set_fallbacks() first");
  }
  return PyObject_Vectorcall(fallbacks[which], args, size_t(nargs), nullptr);
}

PyObject* decode_or_codec(PyObject* self, PyObject* data) {
  PyObject* result = asgi_native::decode(self, data);
  return result == nullptr ? nullptr : or_codec(result, 0, &data, 1);
}

PyObject* canonical_event_or_codec(PyObject* self, PyObject* event) {
  PyObject* result = asgi_native::canonical_event(self, event);
  return result == nullptr ? nullptr : or_codec(result, 1, &event, 1);
}

PyObject* encode_event_or_codec(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  PyObject* result = asgi_native::encode_event(self, args, nargs);
  return result == nullptr ? nullptr : or_codec(result, 2, args, nargs);
}

PyObject* payload_size_or_codec(PyObject* self, PyObject* event) {
  PyObject* result = asgi_native::payload_size(self, event);
  return result == nullptr ? nullptr : or_codec(result, 3, &event, 1);
}

PyCFunction fastcall(PyObject* (*function)(PyObject*, PyObject* const*, Py_ssize_t)) {
  return reinterpret_cast<PyCFunction>(reinterpret_cast<void*>(function));
}

PyMethodDef methods[] = {
    {"decode", asgi_native::decode, METH_O,
     "decode(data) -> the dict of codec.decode(data), or None: ask codec.decode."},
    {"canonical_event", asgi_native::canonical_event, METH_O,
     "canonical_event(event) -> codec.canonical_event(event), or None: ask codec."},
    {"encode_event", fastcall(asgi_native::encode_event), METH_FASTCALL,
     "encode_event(gateway, worker, conn, seq, event, parts=False) -> bytes (with parts, a "
     "Parts for a payload of 16 KiB or more), or None: ask codec."},
    {"payload_size", asgi_native::payload_size, METH_O,
     "payload_size(event) -> codec.payload_size(event), or None: ask codec."},
    {"set_fallbacks", fastcall(set_fallbacks), METH_FASTCALL,
     "set_fallbacks(decode, canonical_event, encode_event, payload_size): the "
     "pure-Python codec's."},
    {"decode_or_codec", decode_or_codec, METH_O, "decode(data), else the fallback's."},
    {"canonical_event_or_codec", canonical_event_or_codec, METH_O,
     "canonical_event(event), else the fallback's."},
    {"encode_event_or_codec", fastcall(encode_event_or_codec), METH_FASTCALL,
     "encode_event(gateway, worker, conn, seq, event, parts=False), else the fallback's."},
    {"payload_size_or_codec", payload_size_or_codec, METH_O,
     "payload_size(event), else the fallback's."},
    {"recv_batch", fastcall(asgi_native::recv_batch), METH_FASTCALL,
     "recv_batch(handle, limit) -> [bytes (or a Frame), or (the frame count of a dropped "
     "multipart message,) or (a transport frame's bytes,)], at most limit, without waiting."},
    {"send_batch", fastcall(asgi_native::send_batch), METH_FASTCALL,
     "send_batch(handle, backlog, ring=None) -> (bytes sent, [their waiters]): sends and pops "
     "the (data, waiter) pairs of the deque until ZeroMQ would block; a message of 16 KiB or "
     "more (or a Parts) as ring(data) gives it (a reference to send instead, or data itself)."},
    {"start_task", fastcall(asgi_native::start_task), METH_FASTCALL,
     "start_task(loop, coro, context) -> the task, as eager.start_task."},
    {"capture_call_soon",
     reinterpret_cast<PyCFunction>(reinterpret_cast<void*>(asgi_native::capture_call_soon)),
     METH_FASTCALL | METH_KEYWORDS,
     "The call_soon of eager.py's NativeCapturingLoop (start_task keeps the first step)."},
    {"events", asgi_native::events, METH_O,
     "events(handle) -> the socket's ZMQ_EVENTS (POLLIN | POLLOUT bits)."},
    {nullptr, nullptr, 0, nullptr}};

PyModuleDef module = {PyModuleDef_HEAD_INIT, "asgi_bridge._native",
                      "The Python worker's native fast path (asgi_bridge/wire.py).", -1, methods,
                      nullptr, nullptr, nullptr, nullptr};

}  // namespace

PyMODINIT_FUNC PyInit__native() {
  if (!asgi_native::init_codec() || !asgi_native::init_parts() || !asgi_native::init_bus() ||
      !asgi_native::init_eager()) {
    return nullptr;
  }
  return PyModule_Create(&module);
}
