// asgi_bridge._native: the Python worker's native fast path
// (docs/workers-python.md#native-fast-path), used through asgi_bridge/wire.py
// (the codec, codec.cpp) and asgi_bridge/transport.py (the ZeroMQ batches,
// bus.cpp). The pure-Python code stays the reference and the fallback.
#include "native.hpp"

namespace {

PyCFunction fastcall(PyObject* (*function)(PyObject*, PyObject* const*, Py_ssize_t)) {
  return reinterpret_cast<PyCFunction>(reinterpret_cast<void*>(function));
}

PyMethodDef methods[] = {
    {"decode", asgi_native::decode, METH_O,
     "decode(data) -> the dict of codec.decode(data), or None: ask codec.decode."},
    {"canonical_event", asgi_native::canonical_event, METH_O,
     "canonical_event(event) -> codec.canonical_event(event), or None: ask codec."},
    {"encode_event", fastcall(asgi_native::encode_event), METH_FASTCALL,
     "encode_event(gateway, worker, conn, seq, event) -> bytes, or None: ask codec."},
    {"recv_batch", fastcall(asgi_native::recv_batch), METH_FASTCALL,
     "recv_batch(handle, limit) -> [bytes, or the frame count of a dropped multipart "
     "message], at most limit, without waiting."},
    {"send_batch", fastcall(asgi_native::send_batch), METH_FASTCALL,
     "send_batch(handle, backlog) -> (bytes sent, [their waiters]): sends and pops the "
     "(data, waiter) pairs of the deque until ZeroMQ would block."},
    {nullptr, nullptr, 0, nullptr}};

PyModuleDef module = {PyModuleDef_HEAD_INIT, "asgi_bridge._native",
                      "The Python worker's native fast path (asgi_bridge/wire.py).", -1, methods,
                      nullptr, nullptr, nullptr, nullptr};

}  // namespace

PyMODINIT_FUNC PyInit__native() {
  if (!asgi_native::init_codec() || !asgi_native::init_bus()) return nullptr;
  return PyModule_Create(&module);
}
