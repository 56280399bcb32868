/* The per-buffer history pass of tt_memtop.core.model.MonitorState.apply_events, in C.
 *
 * For each event of a buffer (ALLOC, FREE, ...), the buffer id's entry of ``history`` (a flat list
 * [event, phase, event, phase, ...], newest last, at most ``per_id`` items) gets the event and its
 * phase label, and the entry moves to the end of the dict (dict order is the LRU order). BAD_FRAME
 * events are counted, PROCESS_EXIT events add their PID to ``exited``. The same operations on the
 * same objects as model._history_pass, the reference; tests run both.
 *
 *   history_pass(events, labels, history, per_id, buffer_kinds, bad_frame, process_exit, exited) -> bad frames
 *
 * Two small helpers of the same fold (MonitorState.apply_events), each the C twin of a line of model.py:
 *
 *   labels_of(phases, names) -> [names[ph] for ph in phases]   (KeyError as the comprehension raises it)
 *   has_kind(events, kind) -> kind in (ev.kind for ev in events)
 *
 *   setup(Event)   once, from model.py: an Event's slots are then read directly, not looked up by name
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

static PyObject *s_kind, *s_bid, *s_pid; /* interned attribute names */
static PyTypeObject *event_type = NULL;
static Py_ssize_t off_kind, off_bid, off_pid;

static int member_offset(PyObject *type, const char *name, Py_ssize_t *out) {
    PyObject *d = PyObject_GetAttrString(type, name);
    if (d == NULL) return -1;
    int ok = Py_TYPE(d) == &PyMemberDescr_Type && ((PyMemberDescrObject *)d)->d_member->type == T_OBJECT_EX;
    if (ok) *out = ((PyMemberDescrObject *)d)->d_member->offset;
    Py_DECREF(d);
    if (!ok) PyErr_Format(PyExc_TypeError, "Event.%s is not a slot", name);
    return ok ? 0 : -1;
}

static PyObject *setup(PyObject *self, PyObject *type) {
    if (!PyType_Check(type)) {
        PyErr_SetString(PyExc_TypeError, "setup(Event)");
        return NULL;
    }
    Py_ssize_t k, b, p;
    if (member_offset(type, "kind", &k) < 0 || member_offset(type, "buffer_id", &b) < 0 ||
        member_offset(type, "pid", &p) < 0)
        return NULL;
    off_kind = k;
    off_bid = b;
    off_pid = p;
    Py_INCREF(type);
    Py_XSETREF(event_type, (PyTypeObject *)type);
    Py_RETURN_NONE;
}

/* history.pop(key, None) in one look-up: a new reference, or NULL (an error set, or not there) */
static inline PyObject *dict_pop(PyObject *d, PyObject *key) {
#if PY_VERSION_HEX >= 0x030D0000
    PyObject *v = NULL;
    if (PyDict_Pop(d, key, &v) <= 0) return NULL;
#else
    PyObject *v = _PyDict_Pop(d, key, Py_None);
#endif
    if (v == Py_None) { /* as the reference's pop(bid, None): an entry that is None is no entry */
        Py_DECREF(v);
        return NULL;
    }
    return v;
}

/* ev.<slot> as a new reference: straight from the slot of an Event, else by name */
static inline PyObject *field(PyObject *ev, Py_ssize_t off, PyObject *name) {
    if (Py_TYPE(ev) == event_type) {
        PyObject *v = *(PyObject **)((char *)ev + off);
        if (v != NULL) return Py_NewRef(v);
    }
    return PyObject_GetAttr(ev, name);
}

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
        PyObject *kind = field(ev, off_kind, s_kind);
        int r = kind ? PySet_Contains(kinds, kind) : -1;
        if (r > 0) {
            PyObject *bid = field(ev, off_bid, s_bid);
            PyObject *h = NULL;
            r = -1;
            if (bid != NULL) {
                h = dict_pop(history, bid); /* re-inserted below: at the end (dict order is the LRU order) */
                if (h != NULL) {
                    r = 0;
                    if (PyList_Check(h)) {
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
                    PyObject *pid = field(ev, off_pid, s_pid);
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

static PyObject *labels_of(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyList_CheckExact(args[0]) || !PyDict_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "labels_of(phases: list, names: dict)");
        return NULL;
    }
    PyObject *phs = args[0], *names = args[1];
    Py_ssize_t n = PyList_GET_SIZE(phs);
    PyObject *out = PyList_New(n);
    if (out == NULL) return NULL;
    PyObject *prev = NULL, *label = NULL; /* runs of one phase: one look-up per run (names cannot change here) */
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *ph = PyList_GET_ITEM(phs, i);
        if (ph != prev || label == NULL) {
            Py_XDECREF(label);
            label = Py_XNewRef(PyDict_GetItemWithError(names, ph));
            if (label == NULL) {
                if (!PyErr_Occurred()) { /* KeyError(ph), as dict.__getitem__ raises it */
                    PyObject *args1 = PyTuple_Pack(1, ph);
                    if (args1 != NULL) {
                        PyErr_SetObject(PyExc_KeyError, args1);
                        Py_DECREF(args1);
                    }
                }
                Py_DECREF(out);
                return NULL;
            }
            prev = ph; /* phs holds it */
        }
        PyList_SET_ITEM(out, i, Py_NewRef(label));
    }
    Py_XDECREF(label);
    return out;
}

static PyObject *has_kind(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "has_kind(events, kind)");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(args[0], "events must be a sequence"), *kind = args[1];
    if (seq == NULL) return NULL;
    int found = 0;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq) && !found; i++) {
        PyObject *k = field(PySequence_Fast_GET_ITEM(seq, i), off_kind, s_kind);
        if (k == NULL) {
            Py_DECREF(seq);
            return NULL;
        }
        /* members of one enum are equal only when identical; anything else is compared */
        found = k == kind ? 1 : Py_TYPE(k) == Py_TYPE(kind) && Py_TYPE(kind) != &PyLong_Type ? 0
                                                                 : PyObject_RichCompareBool(k, kind, Py_EQ);
        Py_DECREF(k);
        if (found < 0) {
            Py_DECREF(seq);
            return NULL;
        }
    }
    Py_DECREF(seq);
    return PyBool_FromLong(found);
}

/* trim_oldest(d, keep): delete the first len(d) - keep keys of d (the least recently touched ids) */
static PyObject *trim_oldest(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyDict_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "trim_oldest(d: dict, keep: int)");
        return NULL;
    }
    Py_ssize_t keep = PyLong_AsSsize_t(args[1]);
    if (keep == -1 && PyErr_Occurred()) return NULL;
    PyObject *d = args[0];
    Py_ssize_t excess = PyDict_GET_SIZE(d) - (keep < 0 ? 0 : keep);
    if (excess <= 0) Py_RETURN_NONE;
    PyObject *keys = PyList_New(excess), *key, *value;
    if (keys == NULL) return NULL;
    Py_ssize_t pos = 0, i = 0;
    while (i < excess && PyDict_Next(d, &pos, &key, &value)) PyList_SET_ITEM(keys, i++, Py_NewRef(key));
    int bad = 0;
    for (Py_ssize_t j = 0; j < i && !bad; j++) bad = PyDict_DelItem(d, PyList_GET_ITEM(keys, j)) < 0;
    Py_DECREF(keys);
    if (bad) return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"trim_oldest", (PyCFunction)(void (*)(void))trim_oldest, METH_FASTCALL,
     "trim_oldest(d, keep): delete the first len(d) - keep keys"},
    {"setup", setup, METH_O, "setup(Event): read its slots directly"},
    {"labels_of", (PyCFunction)(void (*)(void))labels_of, METH_FASTCALL,
     "labels_of(phases, names) -> [names[ph] for ph in phases]"},
    {"has_kind", (PyCFunction)(void (*)(void))has_kind, METH_FASTCALL,
     "has_kind(events, kind) -> kind in (ev.kind for ev in events)"},
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
