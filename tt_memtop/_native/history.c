/* The per-buffer history pass of tt_memtop.core.model.MonitorState.apply_events, in C.
 *
 * For each event of a buffer (ALLOC, FREE, ...), the buffer id's entry of ``history`` (a flat list
 * [event, phase, event, phase, ...], newest last, at most ``per_id`` items) gets the event and its
 * phase label, and the entry moves to the end of the dict (dict order is the LRU order). BAD_FRAME
 * events are counted, PROCESS_EXIT events add their PID to ``exited``. The same operations on the
 * same objects as model._history_pass, the reference; tests run both.
 *
 *   history_pass(events, labels, history, per_id, buffer_kinds, bad_frame, process_exit, exited) -> bad frames
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *s_kind, *s_bid, *s_pid; /* interned attribute names */

static PyObject *history_pass(PyObject *self, PyObject *args) {
    PyObject *events, *labels, *history, *kinds, *bad_kind, *exit_kind, *exited;
    Py_ssize_t per_id;
    if (!PyArg_ParseTuple(args, "O!O!O!nOOOO!", &PyList_Type, &events, &PyList_Type, &labels, &PyDict_Type, &history,
                          &per_id, &kinds, &bad_kind, &exit_kind, &PySet_Type, &exited))
        return NULL;
    if (!PyAnySet_Check(kinds)) {
        PyErr_SetString(PyExc_TypeError, "buffer_kinds must be a set");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(events);
    if (PyList_GET_SIZE(labels) != n) {
        PyErr_SetString(PyExc_ValueError, "one label per event");
        return NULL;
    }
    long bad = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        /* the lists may not change under us: nothing here runs Python code but __hash__ / __eq__ of ints */
        if (i >= PyList_GET_SIZE(events) || i >= PyList_GET_SIZE(labels)) {
            PyErr_SetString(PyExc_RuntimeError, "events changed during the history pass");
            return NULL;
        }
        PyObject *ev = PyList_GET_ITEM(events, i), *label = PyList_GET_ITEM(labels, i);
        Py_INCREF(ev);
        Py_INCREF(label);
        PyObject *kind = PyObject_GetAttr(ev, s_kind);
        int r = kind ? PySet_Contains(kinds, kind) : -1;
        if (r > 0) {
            PyObject *bid = PyObject_GetAttr(ev, s_bid);
            PyObject *h = NULL;
            r = -1;
            if (bid != NULL) {
                h = PyDict_GetItemWithError(history, bid);
                if (h != NULL) {
                    Py_INCREF(h);
                    r = PyDict_DelItem(history, bid); /* re-inserted below: at the end */
                    if (r == 0 && PyList_Check(h)) {
                        r = (PyList_Append(h, ev) < 0 || PyList_Append(h, label) < 0) ? -1 : 0;
                        if (r == 0 && PyList_GET_SIZE(h) > per_id) r = PyList_SetSlice(h, 0, 2, NULL);
                    } else if (r == 0) {
                        PyErr_SetString(PyExc_TypeError, "a history entry must be a list");
                        r = -1;
                    }
                } else if (!PyErr_Occurred()) {
                    h = PyList_New(2);
                    if (h != NULL) {
                        Py_INCREF(ev);
                        Py_INCREF(label);
                        PyList_SET_ITEM(h, 0, ev);
                        PyList_SET_ITEM(h, 1, label);
                        r = 0;
                    }
                }
                if (r == 0) r = PyDict_SetItem(history, bid, h);
            }
            Py_XDECREF(h);
            Py_XDECREF(bid);
        } else if (r == 0) {
            r = PyObject_RichCompareBool(kind, bad_kind, Py_EQ);
            if (r > 0) {
                bad++;
                r = 0;
            } else if (r == 0) {
                r = PyObject_RichCompareBool(kind, exit_kind, Py_EQ);
                if (r > 0) {
                    PyObject *pid = PyObject_GetAttr(ev, s_pid);
                    r = pid ? PySet_Add(exited, pid) : -1;
                    Py_XDECREF(pid);
                }
            }
        }
        Py_XDECREF(kind);
        Py_DECREF(ev);
        Py_DECREF(label);
        if (r < 0) return NULL;
    }
    return PyLong_FromLong(bad);
}

static PyMethodDef methods[] = {
    {"history_pass", history_pass, METH_VARARGS,
     "history_pass(events, labels, history, per_id, buffer_kinds, bad_frame, process_exit, exited) -> bad frames"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "history", "MonitorState's per-buffer history pass.", -1,
                                    methods};

PyMODINIT_FUNC PyInit_history(void) {
    s_kind = PyUnicode_InternFromString("kind");
    s_bid = PyUnicode_InternFromString("buffer_id");
    s_pid = PyUnicode_InternFromString("pid");
    if (s_kind == NULL || s_bid == NULL || s_pid == NULL) return NULL;
    return PyModule_Create(&module);
}
