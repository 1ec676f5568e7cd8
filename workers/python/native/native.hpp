// asgi_bridge._native: the functions of its parts, put together by module.cpp.
#pragma once

#define PY_SSIZE_T_CLEAN
#include <Python.h>

namespace asgi_native {

// codec.cpp: the codec's hot paths; None where the pure-Python codec must decide.
bool init_codec();
PyObject* decode(PyObject* self, PyObject* data);
PyObject* canonical_event(PyObject* self, PyObject* event);
PyObject* encode_event(PyObject* self, PyObject* const* args, Py_ssize_t nargs);
PyObject* payload_size(PyObject* self, PyObject* event);

// parts.cpp: a message in pieces, head + body + tail (encode_event's parts=True).
bool init_parts();
bool is_parts(PyObject* obj);
PyObject* make_parts(PyObject* head, PyObject* body, PyObject* tail);  // (new references)
PyObject* join_parts(PyObject* parts);  // the message as one bytes object

// bus.cpp: a batch of ZeroMQ receives or sends in one call; ZMQ_EVENTS.
bool init_bus();
PyObject* recv_batch(PyObject* self, PyObject* const* args, Py_ssize_t nargs);
PyObject* send_batch(PyObject* self, PyObject* const* args, Py_ssize_t nargs);
PyObject* events(PyObject* self, PyObject* handle);

// eager.cpp: eager.start_task in one call, its task's first step captured natively.
bool init_eager();
PyObject* start_task(PyObject* self, PyObject* const* args, Py_ssize_t nargs);
PyObject* capture_call_soon(PyObject* self, PyObject* const* args, Py_ssize_t nargs,
                            PyObject* kwnames);

}  // namespace asgi_native
