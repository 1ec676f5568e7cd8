// The eager start of asgi_bridge/eager.py in one native call (module.cpp): the same
// steps as eager.start_task, with the task's first step captured by a native
// call_soon instead of a Python one. Per HTTP request the Python version costs two
// Python frames (start_task and the capturing call_soon) around the task's creation.
//
//   start_task(loop, coro, context)   as eager.start_task
//   capture_call_soon(callback, *args, context=None)
//       the call_soon of eager.py's NativeCapturingLoop while start_task runs: keeps
//       the first callback (the task's first step), hands any later one to the base
//       loop class's call_soon (_base_call_soon), as CapturingLoop.call_soon does.
#include "native.hpp"

namespace {

PyObject* task_type;         // asyncio.Task
PyObject* current_tasks;     // asyncio.tasks._current_tasks: loop -> its running task
PyObject* capturing_name;    // "_capturing_native"
PyObject* base_call_soon_name;  // "_base_call_soon"
PyObject* class_name;        // "__class__"
PyObject* create_task_name;  // "create_task"
PyObject* task_kwnames;      // ("loop", "context")
PyObject* context_kwnames;   // ("context",)

// While start_task creates the task: its loop (borrowed), and what call_soon got.
PyObject* capturing_loop;
PyObject* captured_callback;
PyObject* captured_args;
PyObject* captured_context;

bool lookup(const char* module_name, const char* attr, PyObject** out) {
  PyObject* module = PyImport_ImportModule(module_name);
  if (module == nullptr) return false;
  *out = PyObject_GetAttrString(module, attr);
  Py_DECREF(module);
  return *out != nullptr;
}

bool ready() {
  if (task_type != nullptr) return true;
  return lookup("asyncio", "Task", &task_type) &&
         lookup("asyncio.tasks", "_current_tasks", &current_tasks);
}

void clear_captured() {
  Py_CLEAR(captured_callback);
  Py_CLEAR(captured_args);
  Py_CLEAR(captured_context);
}

// loop.create_task(coro, context=context): no eager start for this loop or now.
PyObject* create_task(PyObject* loop, PyObject* coro, PyObject* context) {
  PyObject* method = PyObject_GetAttr(loop, create_task_name);
  if (method == nullptr) return nullptr;
  PyObject* args[] = {coro, context};
  PyObject* task = PyObject_Vectorcall(method, args, 1, context_kwnames);
  Py_DECREF(method);
  return task;
}

// The task, created while the loop's class is the capturing one; its first step in
// captured_*. The class is back whatever happened.
PyObject* new_task(PyObject* loop, PyObject* coro, PyObject* context, PyObject* capturing) {
  PyObject* eager = reinterpret_cast<PyObject*>(Py_TYPE(loop));
  Py_INCREF(eager);
  if (PyObject_SetAttr(loop, class_name, capturing) < 0) {
    Py_DECREF(eager);
    return nullptr;
  }
  capturing_loop = loop;
  PyObject* args[] = {coro, loop, context};
  PyObject* task = PyObject_Vectorcall(task_type, args, 1, task_kwnames);
  capturing_loop = nullptr;
  PyObject *type, *value, *traceback;
  PyErr_Fetch(&type, &value, &traceback);  // (a failed Task() keeps its error)
  int restored = PyObject_SetAttr(loop, class_name, eager);
  Py_DECREF(eager);
  if (restored < 0) {  // (not expected: the two classes share their layout)
    Py_XDECREF(type), Py_XDECREF(value), Py_XDECREF(traceback);
    Py_XDECREF(task);
    return nullptr;
  }
  PyErr_Restore(type, value, traceback);
  return task;
}

// The captured step, run in its context as the loop's handle would run it.
bool run_step(PyObject* callback, PyObject* args, PyObject* context) {
  bool in_context = context != Py_None && PyContext_CheckExact(context);
  if (in_context && PyContext_Enter(context) < 0) return false;
  PyObject* result = PyObject_Call(callback, args, nullptr);
  bool ok = result != nullptr;
  Py_XDECREF(result);
  if (in_context && PyContext_Exit(context) < 0) ok = false;
  return ok;
}

}  // namespace

namespace asgi_native {

bool init_eager() {
  capturing_name = PyUnicode_InternFromString("_capturing_native");
  base_call_soon_name = PyUnicode_InternFromString("_base_call_soon");
  class_name = PyUnicode_InternFromString("__class__");
  create_task_name = PyUnicode_InternFromString("create_task");
  task_kwnames = Py_BuildValue("(ss)", "loop", "context");
  context_kwnames = Py_BuildValue("(s)", "context");
  return capturing_name && base_call_soon_name && class_name && create_task_name &&
         task_kwnames && context_kwnames;
}

PyObject* start_task(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 3) return PyErr_Format(PyExc_TypeError, "start_task(loop, coro, context)");
  PyObject *loop = args[0], *coro = args[1], *context = args[2];
  if (!ready()) return nullptr;
  PyObject* capturing = PyObject_GetAttr(reinterpret_cast<PyObject*>(Py_TYPE(loop)),
                                         capturing_name);
  if (capturing == nullptr) {  // not one of the worker's eager loops
    PyErr_Clear();
    return create_task(loop, coro, context);
  }
  PyObject* running = PyDict_GetItemWithError(current_tasks, loop);
  if (running != nullptr || PyErr_Occurred() || capturing_loop != nullptr) {
    // Inside a running task (a step inside another's is refused by asyncio), or
    // already creating one: scheduled as usual.
    Py_DECREF(capturing);
    return PyErr_Occurred() ? nullptr : create_task(loop, coro, context);
  }
  clear_captured();
  PyObject* task = new_task(loop, coro, context, capturing);
  Py_DECREF(capturing);
  if (task == nullptr) {
    clear_captured();
    return nullptr;
  }
  PyObject *callback = captured_callback, *step_args = captured_args,
           *step_context = captured_context;
  captured_callback = captured_args = captured_context = nullptr;
  bool ok = callback != nullptr && run_step(callback, step_args, step_context);
  if (callback == nullptr) {
    PyErr_SetString(PyExc_RuntimeError, "start_task: the task scheduled no first step");
  }
  Py_XDECREF(callback), Py_XDECREF(step_args), Py_XDECREF(step_context);
  if (!ok) Py_CLEAR(task);
  return task;
}

PyObject* capture_call_soon(PyObject*, PyObject* const* args, Py_ssize_t nargs,
                            PyObject* kwnames) {
  Py_ssize_t nkw = kwnames == nullptr ? 0 : PyTuple_GET_SIZE(kwnames);
  if (capturing_loop != nullptr && captured_callback == nullptr && nargs >= 1) {
    PyObject* context = Py_None;
    for (Py_ssize_t i = 0; i < nkw; ++i) {
      if (PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, i), "context") != 0) {
        return PyErr_Format(PyExc_TypeError, "call_soon() got an unexpected keyword argument");
      }
      context = args[nargs + i];
    }
    captured_args = PyTuple_New(nargs - 1);
    if (captured_args == nullptr) return nullptr;
    for (Py_ssize_t i = 1; i < nargs; ++i) {
      PyTuple_SET_ITEM(captured_args, i - 1, Py_NewRef(args[i]));
    }
    captured_callback = Py_NewRef(args[0]);
    captured_context = Py_NewRef(context);
    Py_RETURN_NONE;  // (the Task keeps no handle)
  }
  // Not the task's first step: the base class's call_soon(loop, *args, **kwargs).
  if (capturing_loop == nullptr) {
    return PyErr_Format(PyExc_RuntimeError, "capture_call_soon outside start_task");
  }
  PyObject* base = PyObject_GetAttr(reinterpret_cast<PyObject*>(Py_TYPE(capturing_loop)),
                                    base_call_soon_name);
  if (base == nullptr) return nullptr;
  PyObject* stack[16];
  if (nargs + nkw + 1 > 16) {
    Py_DECREF(base);
    return PyErr_Format(PyExc_TypeError, "call_soon: too many arguments");
  }
  stack[0] = capturing_loop;
  for (Py_ssize_t i = 0; i < nargs + nkw; ++i) stack[i + 1] = args[i];
  PyObject* result = PyObject_Vectorcall(base, stack, size_t(nargs + 1), kwnames);
  Py_DECREF(base);
  return result;
}

}  // namespace asgi_native
