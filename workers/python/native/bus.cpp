// The ZeroMQ half of asgi_bridge._native (module.cpp): a batch of receives or
// sends on a pyzmq socket's libzmq handle in one call. Through pyzmq each message
// costs several Python-level calls (recv, then getsockopt for RCVMORE; send's
// wrapper and its flag enums): measured 1.5 + 3.8 us per received and 3.7 us per
// sent message on the 2-core test machine, a third of the worker's time per
// WebSocket echo; ZMQ_EVENTS after each batch likewise. asgi_bridge/transport.py
// uses these only when pyzmq and this module share one libzmq (wire.py checks
// it), and otherwise its own pyzmq loop. A message of 16 KiB or more (a large
// body) is sent by reference, not copied into ZeroMQ, and received as a Frame
// over ZeroMQ's own buffer, not copied into a bytes object before decoding; once the
// gateway accepted the worker's shared-memory ring, send_batch hands it to the
// transport to write there instead (docs/protocol.md §1.1), and recv_batch marks
// the ring's frames for the transport.
#include <zmq.h>

#include <cerrno>
#include <mutex>
#include <vector>

#include "native.hpp"

namespace {

PyObject* popleft_name;

// A large message is handed to ZeroMQ without a copy (zmq_msg_init_data): its bytes
// object stays referenced until libzmq is done with it. libzmq says so from its I/O
// thread, which may not touch Python objects: the reference is queued here and
// dropped by the loop's thread at its next send_batch.
constexpr Py_ssize_t ZERO_COPY_MIN = 16 * 1024;  // below, a copy is cheaper
std::mutex released_mutex;
std::vector<PyObject*> released;

void release_later(void*, void* hint) {
  std::lock_guard<std::mutex> lock(released_mutex);
  released.push_back(static_cast<PyObject*>(hint));
}

void drop_released() {
  std::vector<PyObject*> done;
  {
    std::lock_guard<std::mutex> lock(released_mutex);
    done.swap(released);
  }
  for (PyObject* obj : done) Py_DECREF(obj);
}

// zmq_send of a bytes object's data without copying it; as zmq_send's result.
int send_by_reference(void* socket, PyObject* data) {
  zmq_msg_t msg;
  Py_INCREF(data);  // (released by release_later, also when the send fails)
  if (zmq_msg_init_data(&msg, PyBytes_AS_STRING(data), size_t(PyBytes_GET_SIZE(data)),
                        release_later, data) < 0) {
    Py_DECREF(data);
    return -1;
  }
  int rc = zmq_msg_send(&msg, socket, ZMQ_DONTWAIT);
  if (rc < 0) {
    int error = zmq_errno();
    zmq_msg_close(&msg);  // (calls release_later now)
    errno = error;
  }
  return rc;
}

PyObject* zmq_failure(int error) {
  errno = error;
  return PyErr_Format(PyExc_OSError, "[Errno %d] %s", error, zmq_strerror(error));
}

bool handle_of(PyObject* arg, void** socket) {
  *socket = PyLong_AsVoidPtr(arg);
  return !(*socket == nullptr && PyErr_Occurred());
}

// The rest of a multipart message (the protocol has one frame per message):
// read and dropped; answers the frame count for the caller's log line.
long drop_rest(void* socket) {
  long frames = 1;
  int more = 1;
  while (more) {
    zmq_msg_t frame;
    zmq_msg_init(&frame);
    if (zmq_msg_recv(&frame, socket, ZMQ_DONTWAIT) < 0) {
      zmq_msg_close(&frame);
      break;  // (a multipart message arrives whole: not expected)
    }
    ++frames;
    more = zmq_msg_more(&frame);
    zmq_msg_close(&frame);
  }
  return frames;
}

// A large received message as it is (a Frame): read-only through the buffer protocol
// (the native decode's and msgpack's way in), not copied into a bytes object first.
struct Frame {
  PyObject_HEAD
  zmq_msg_t msg;
};

PyTypeObject* frame_type;

int frame_getbuffer(PyObject* self, Py_buffer* view, int flags) {
  zmq_msg_t* msg = &reinterpret_cast<Frame*>(self)->msg;
  return PyBuffer_FillInfo(view, self, zmq_msg_data(msg), Py_ssize_t(zmq_msg_size(msg)), 1,
                           flags);
}

void frame_dealloc(PyObject* self) {
  PyTypeObject* type = Py_TYPE(self);
  zmq_msg_close(&reinterpret_cast<Frame*>(self)->msg);
  type->tp_free(self);
  Py_DECREF(type);
}

PyType_Slot frame_slots[] = {
    {Py_bf_getbuffer, reinterpret_cast<void*>(frame_getbuffer)},
    {Py_tp_dealloc, reinterpret_cast<void*>(frame_dealloc)},
    {Py_tp_doc, const_cast<char*>("A received bus message, read-only (buffer protocol).")},
    {0, nullptr}};
PyType_Spec frame_spec = {"asgi_bridge._native.Frame", sizeof(Frame), 0, Py_TPFLAGS_DEFAULT,
                          frame_slots};

// `msg`'s content as a Frame (taking it over) or, when small, as bytes.
PyObject* message_object(zmq_msg_t* msg) {
  if (Py_ssize_t(zmq_msg_size(msg)) < ZERO_COPY_MIN) {
    return PyBytes_FromStringAndSize(static_cast<const char*>(zmq_msg_data(msg)),
                                     Py_ssize_t(zmq_msg_size(msg)));
  }
  Frame* frame = PyObject_New(Frame, frame_type);
  if (frame == nullptr) return nullptr;
  zmq_msg_init(&frame->msg);
  zmq_msg_move(&frame->msg, msg);
  return reinterpret_cast<PyObject*>(frame);
}

// A frame the transport handles itself rather than the worker (docs/protocol.md
// §1.1: a shared-memory ring's reference, accept or refuse): its first byte is 0xC1,
// which msgpack never uses.
bool transport_frame(zmq_msg_t* msg) {
  return zmq_msg_size(msg) > 0 && *static_cast<const unsigned char*>(zmq_msg_data(msg)) == 0xC1;
}

// A 1-tuple around `item` (taking it over): how recv_batch marks what is not a message
// for the worker, so that the transport's loop tests each item once.
PyObject* marked(PyObject* item) {
  if (item == nullptr) return nullptr;
  PyObject* tuple = PyTuple_New(1);
  if (tuple == nullptr) {
    Py_DECREF(item);
    return nullptr;
  }
  PyTuple_SET_ITEM(tuple, 0, item);
  return tuple;
}

// One message, as bytes or a Frame; a dropped multipart message as (its frame count,),
// a transport frame as (bytes,); nullptr with *error set (EAGAIN: nothing more to read)
// or with a Python exception.
PyObject* recv_one(void* socket, int* error) {
  zmq_msg_t msg;
  zmq_msg_init(&msg);
  if (zmq_msg_recv(&msg, socket, ZMQ_DONTWAIT) < 0) {
    *error = zmq_errno();
    zmq_msg_close(&msg);
    return nullptr;
  }
  PyObject* item;
  if (zmq_msg_more(&msg)) {
    item = marked(PyLong_FromLong(drop_rest(socket)));
  } else if (transport_frame(&msg)) {
    item = marked(PyBytes_FromStringAndSize(static_cast<const char*>(zmq_msg_data(&msg)),
                                            Py_ssize_t(zmq_msg_size(&msg))));
  } else {
    item = message_object(&msg);
  }
  zmq_msg_close(&msg);
  return item;
}

}  // namespace

namespace asgi_native {

bool init_bus() {
  popleft_name = PyUnicode_InternFromString("popleft");
  frame_type = reinterpret_cast<PyTypeObject*>(PyType_FromSpec(&frame_spec));
  return popleft_name != nullptr && frame_type != nullptr;
}

PyObject* recv_batch(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  void* socket;
  if (nargs != 2) return PyErr_Format(PyExc_TypeError, "recv_batch(handle, limit)");
  Py_ssize_t limit = PyLong_AsSsize_t(args[1]);
  if (!handle_of(args[0], &socket) || (limit == -1 && PyErr_Occurred())) return nullptr;
  PyObject* list = PyList_New(0);
  if (list == nullptr) return nullptr;
  for (Py_ssize_t i = 0; i < limit; ++i) {
    int error = 0;
    PyObject* item = recv_one(socket, &error);
    if (item == nullptr) {
      if (error == EAGAIN) break;
      // What was read first still goes up; the error comes again at the next call.
      if (error != 0 && PyList_GET_SIZE(list) == 0) zmq_failure(error);
      if (PyErr_Occurred()) {
        Py_DECREF(list);
        return nullptr;
      }
      break;
    }
    int rc = PyList_Append(list, item);
    Py_DECREF(item);
    if (rc < 0) {
      Py_DECREF(list);
      return nullptr;
    }
  }
  return list;
}

// zmq_send of a copy of `data`'s bytes (*size of them); as zmq_send's result, -2 with
// a Python exception.
static int send_copy(void* socket, PyObject* data, Py_ssize_t* size) {
  Py_buffer view;
  if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) return -2;
  int rc = zmq_send(socket, view.buf, size_t(view.len), ZMQ_DONTWAIT);
  *size = view.len;
  PyBuffer_Release(&view);
  return rc;
}

static bool writable(void* socket) {
  int value = 0;
  size_t size = sizeof(value);
  return zmq_getsockopt(socket, ZMQ_EVENTS, &value, &size) == 0 && (value & ZMQ_POLLOUT) != 0;
}

// A large message (bytes, or a Parts: asgi_native::is_parts): through the
// shared-memory ring when `ring` (the transport's _through_ring for this link, or
// None) gives its reference to send instead, else by reference to its bytes (a
// Parts joined first). Only once ZeroMQ takes a message now: a reference written and
// then refused would leave its copy unused in the ring, a join would be made again.
// As zmq_send's result, -2 with a Python exception.
static int send_large(void* socket, PyObject* data, PyObject* ring) {
  bool parts = asgi_native::is_parts(data);
  if ((ring != Py_None || parts) && !writable(socket)) {
    errno = EAGAIN;
    return -1;
  }
  if (ring != Py_None) {
    PyObject* sent_as = PyObject_CallOneArg(ring, data);
    if (sent_as == nullptr) return -2;
    bool in_ring = sent_as != data;  // then sent_as is its reference, to send instead
    Py_ssize_t frame_size = 0;
    int rc = in_ring ? send_copy(socket, sent_as, &frame_size) : 0;
    Py_DECREF(sent_as);
    if (in_ring) return rc;
  }
  if (!parts) return send_by_reference(socket, data);
  PyObject* joined = asgi_native::join_parts(data);
  if (joined == nullptr) return -2;
  int rc = send_by_reference(socket, joined);
  Py_DECREF(joined);
  return rc;
}

// Sends one (data, waiter) pair's data (*size bytes, as queued); 1 sent, 0 would block,
// -1 an exception.
static int send_one(void* socket, PyObject* pair, PyObject* ring, Py_ssize_t* size) {
  if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
    PyErr_SetString(PyExc_TypeError, "send_batch: the backlog holds (data, waiter) pairs");
    return -1;
  }
  PyObject* data = PyTuple_GET_ITEM(pair, 0);
  int rc;
  if (PyBytes_CheckExact(data) && PyBytes_GET_SIZE(data) >= ZERO_COPY_MIN) {
    rc = send_large(socket, data, ring);
    *size = PyBytes_GET_SIZE(data);
  } else if (asgi_native::is_parts(data)) {
    rc = send_large(socket, data, ring);
    *size = PyObject_Size(data);
  } else {
    rc = send_copy(socket, data, size);
  }
  if (rc >= 0) return 1;
  if (rc == -2) return -1;
  int error = zmq_errno();
  if (error == EAGAIN) return 0;
  zmq_failure(error);
  return -1;
}

PyObject* events(PyObject*, PyObject* arg) {
  void* socket;
  if (!handle_of(arg, &socket)) return nullptr;
  int value = 0;
  size_t size = sizeof(value);
  if (zmq_getsockopt(socket, ZMQ_EVENTS, &value, &size) < 0) return zmq_failure(zmq_errno());
  return PyLong_FromLong(value);
}

PyObject* send_batch(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  void* socket;
  if (nargs != 2 && nargs != 3) {
    return PyErr_Format(PyExc_TypeError, "send_batch(handle, backlog, ring=None)");
  }
  if (!handle_of(args[0], &socket)) return nullptr;
  PyObject* backlog = args[1];
  PyObject* ring = nargs == 3 ? args[2] : Py_None;
  drop_released();
  Py_ssize_t sent = 0;
  PyObject* waiters = PyList_New(0);
  if (waiters == nullptr) return nullptr;
  while (PyObject_Size(backlog) > 0) {
    PyObject* pair = PySequence_GetItem(backlog, 0);
    Py_ssize_t size = 0;
    int rc = pair == nullptr ? -1 : send_one(socket, pair, ring, &size);
    PyObject* popped = rc == 1 ? PyObject_CallMethodNoArgs(backlog, popleft_name) : nullptr;
    bool ok = rc == 0 || popped != nullptr;
    if (popped != nullptr) {
      Py_DECREF(popped);
      sent += size;
      PyObject* waiter = PyTuple_GET_ITEM(pair, 1);
      if (waiter != Py_None) ok = PyList_Append(waiters, waiter) == 0;
    }
    Py_XDECREF(pair);
    if (!ok) {
      Py_DECREF(waiters);
      return nullptr;
    }
    if (rc == 0) break;  // ZeroMQ's high-water mark: the rest waits for POLLOUT
  }
  PyObject* result = Py_BuildValue("(nO)", sent, waiters);
  Py_DECREF(waiters);
  return result;
}

}  // namespace asgi_native
