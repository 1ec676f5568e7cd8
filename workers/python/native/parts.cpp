// asgi_bridge._native.Parts: a bus message in three pieces, head + body + tail,
// whose concatenation is the message (docs/workers-python.md#native-fast-path).
// encode_event(..., parts=True) answers one for a large payload, the body being
// the app's own immutable bytes (or a view of them), not a copy: the bus then
// copies each piece once, into the shared-memory ring (shared_ring.Ring.write),
// or joins them for the socket. len() is the message's size in bytes.
#include <cstring>

#include "native.hpp"

namespace {

struct Parts {
  PyObject_HEAD
  PyObject* pieces;  // (head: bytes, body: bytes or a memoryview of bytes, tail: bytes)
  Py_ssize_t size;
};

PyTypeObject* parts_type;

Py_ssize_t parts_length(PyObject* self) { return reinterpret_cast<Parts*>(self)->size; }

PyObject* parts_get_pieces(PyObject* self, void*) {
  return Py_NewRef(reinterpret_cast<Parts*>(self)->pieces);
}

PyObject* parts_join_method(PyObject* self, PyObject*) { return asgi_native::join_parts(self); }

void parts_dealloc(PyObject* self) {
  PyTypeObject* type = Py_TYPE(self);
  Py_XDECREF(reinterpret_cast<Parts*>(self)->pieces);
  type->tp_free(self);
  Py_DECREF(type);
}

PyGetSetDef parts_getset[] = {
    {"pieces", parts_get_pieces, nullptr, "(head, body, tail)", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr}};

PyMethodDef parts_methods[] = {
    {"join", parts_join_method, METH_NOARGS, "join() -> the message as one bytes object."},
    {nullptr, nullptr, 0, nullptr}};

PyType_Slot parts_slots[] = {
    {Py_sq_length, reinterpret_cast<void*>(parts_length)},
    {Py_tp_getset, parts_getset},
    {Py_tp_methods, parts_methods},
    {Py_tp_dealloc, reinterpret_cast<void*>(parts_dealloc)},
    {Py_tp_doc, const_cast<char*>("A bus message in pieces: head + body + tail (len: its bytes).")},
    {0, nullptr}};
PyType_Spec parts_spec = {"asgi_bridge._native.Parts", sizeof(Parts), 0, Py_TPFLAGS_DEFAULT,
                          parts_slots};

}  // namespace

namespace asgi_native {

bool init_parts() {
  parts_type = reinterpret_cast<PyTypeObject*>(PyType_FromSpec(&parts_spec));
  return parts_type != nullptr;
}

bool is_parts(PyObject* obj) { return Py_IS_TYPE(obj, parts_type); }

PyObject* make_parts(PyObject* head, PyObject* body, PyObject* tail) {
  Py_buffer view;
  if (PyObject_GetBuffer(body, &view, PyBUF_SIMPLE) < 0) return nullptr;
  Py_ssize_t size = PyBytes_GET_SIZE(head) + view.len + PyBytes_GET_SIZE(tail);
  PyBuffer_Release(&view);
  PyObject* pieces = PyTuple_Pack(3, head, body, tail);
  if (pieces == nullptr) return nullptr;
  Parts* parts = PyObject_New(Parts, parts_type);
  if (parts == nullptr) {
    Py_DECREF(pieces);
    return nullptr;
  }
  parts->pieces = pieces;
  parts->size = size;
  return reinterpret_cast<PyObject*>(parts);
}

// One copy of each piece into a new bytes object (through the buffer protocol: a
// released view raises rather than being read).
PyObject* join_parts(PyObject* obj) {
  auto* parts = reinterpret_cast<Parts*>(obj);
  PyObject* joined = PyBytes_FromStringAndSize(nullptr, parts->size);
  if (joined == nullptr) return nullptr;
  char* out = PyBytes_AS_STRING(joined);
  Py_ssize_t used = 0;
  for (Py_ssize_t i = 0; i < 3; ++i) {
    Py_buffer view;
    if (PyObject_GetBuffer(PyTuple_GET_ITEM(parts->pieces, i), &view, PyBUF_SIMPLE) < 0) {
      Py_DECREF(joined);
      return nullptr;
    }
    bool fits = used + view.len <= parts->size;
    if (fits) std::memcpy(out + used, view.buf, size_t(view.len));
    used += view.len;
    PyBuffer_Release(&view);
    if (!fits) {
      Py_DECREF(joined);
      return PyErr_Format(PyExc_ValueError, "Parts: a piece changed size");
    }
  }
  return joined;
}

}  // namespace asgi_native
