/* The per-event pass of tt_memtop.core.leaks.LeakTracker.observe, in C.
 *
 * The warm-up set: live buffers (below CB, not TRACE) allocated while their process's live phase
 * was loading, warm-up or idle, keyed like the registry (buffer_id << 8 | device, or (device,
 * buffer_id) for other devices); FREE and CLEANUP take them out; CLEANUP events also go to a
 * callback (the reclaimed table). The same operations on the same objects as leaks._warm_pass, the
 * reference; tests run both.
 *
 *   warm_pass(events, warm, phase_of, early_phases, on_cleanup, alloc, free, cleanup, cb, trace) -> None
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *s_kind, *s_bt, *s_pid, *s_dev, *s_bid, *s_size, *s_ts;

/* The warm-set key of (device, buffer_id): a new reference, NULL on error. */
static PyObject *warm_key(PyObject *d, PyObject *bid) {
    int ovf = 0;
    long dv = PyLong_AsLongAndOverflow(d, &ovf);
    if (dv == -1 && PyErr_Occurred()) return NULL;
    if (ovf || dv < 0 || dv >= 256) return PyTuple_Pack(2, d, bid);
    long long b = PyLong_AsLongLongAndOverflow(bid, &ovf);
    if (b == -1 && PyErr_Occurred()) return NULL;
    if (!ovf && b >= 0 && b < (1LL << 54)) return PyLong_FromLongLong((b << 8) | dv);
    PyObject *eight = PyLong_FromLong(8), *dd = PyLong_FromLong(dv), *out = NULL;
    if (eight && dd) {
        PyObject *l = PyNumber_Lshift(bid, eight);
        if (l) {
            out = PyNumber_Or(l, dd);
            Py_DECREF(l);
        }
    }
    Py_XDECREF(eight);
    Py_XDECREF(dd);
    return out;
}

static int pop_key(PyObject *warm, PyObject *ev) {
    if (PyDict_GET_SIZE(warm) == 0) return 0;
    PyObject *d = PyObject_GetAttr(ev, s_dev), *bid = d ? PyObject_GetAttr(ev, s_bid) : NULL;
    PyObject *key = bid ? warm_key(d, bid) : NULL;
    int r = -1;
    if (key != NULL) {
        r = PyDict_Contains(warm, key);
        if (r > 0) r = PyDict_DelItem(warm, key);
    }
    Py_XDECREF(key);
    Py_XDECREF(bid);
    Py_XDECREF(d);
    return r < 0 ? -1 : 0;
}

static PyObject *warm_pass(PyObject *self, PyObject *args) {
    PyObject *events, *warm, *phase_of, *early_phases, *on_cleanup, *k_alloc, *k_free, *k_cleanup;
    long t_cb, t_trace;
    if (!PyArg_ParseTuple(args, "OO!OOOOOOll", &events, &PyDict_Type, &warm, &phase_of, &early_phases, &on_cleanup,
                          &k_alloc, &k_free, &k_cleanup, &t_cb, &t_trace))
        return NULL;
    PyObject *seq = PySequence_Fast(events, "events must be a sequence");
    if (seq == NULL) return NULL;
    PyObject *early = PyDict_New(); /* pid -> phase_of(pid) in early_phases: the phases do not change here */
    if (early == NULL) {
        Py_DECREF(seq);
        return NULL;
    }
    int ok = 0;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *ev = PySequence_Fast_GET_ITEM(seq, i);
        Py_INCREF(ev);
        PyObject *k = PyObject_GetAttr(ev, s_kind);
        int r = k ? PyObject_RichCompareBool(k, k_alloc, Py_EQ) : -1;
        if (r > 0) {
            r = 0;
            if (phase_of != Py_None) {
                PyObject *bt = PyObject_GetAttr(ev, s_bt);
                long t = bt ? PyLong_AsLong(bt) : -1;
                Py_XDECREF(bt);
                if (t == -1 && PyErr_Occurred()) {
                    r = -1;
                } else if (t < t_cb && t != t_trace) {
                    PyObject *pid = PyObject_GetAttr(ev, s_pid);
                    PyObject *e = pid ? PyDict_GetItemWithError(early, pid) : NULL; /* borrowed */
                    int is_early = -1;
                    if (e != NULL) {
                        is_early = e == Py_True;
                    } else if (pid != NULL && !PyErr_Occurred()) {
                        PyObject *ph = PyObject_CallOneArg(phase_of, pid);
                        is_early = ph ? PySequence_Contains(early_phases, ph) : -1;
                        Py_XDECREF(ph);
                        if (is_early >= 0 && PyDict_SetItem(early, pid, is_early ? Py_True : Py_False) < 0)
                            is_early = -1;
                    }
                    if (is_early > 0) {
                        PyObject *d = PyObject_GetAttr(ev, s_dev), *bid = d ? PyObject_GetAttr(ev, s_bid) : NULL;
                        PyObject *key = bid ? warm_key(d, bid) : NULL;
                        PyObject *size = key ? PyObject_GetAttr(ev, s_size) : NULL;
                        PyObject *ts = size ? PyObject_GetAttr(ev, s_ts) : NULL;
                        PyObject *val = ts ? PyTuple_Pack(3, pid, size, ts) : NULL;
                        r = val ? PyDict_SetItem(warm, key, val) : -1;
                        Py_XDECREF(val);
                        Py_XDECREF(ts);
                        Py_XDECREF(size);
                        Py_XDECREF(key);
                        Py_XDECREF(bid);
                        Py_XDECREF(d);
                    } else if (is_early < 0) {
                        r = -1;
                    }
                    Py_XDECREF(pid);
                }
            }
        } else if (r == 0) {
            r = PyObject_RichCompareBool(k, k_free, Py_EQ);
            if (r > 0) {
                r = pop_key(warm, ev);
            } else if (r == 0) {
                r = PyObject_RichCompareBool(k, k_cleanup, Py_EQ);
                if (r > 0) {
                    r = pop_key(warm, ev);
                    if (r == 0) {
                        PyObject *res = PyObject_CallOneArg(on_cleanup, ev);
                        r = res ? 0 : -1;
                        Py_XDECREF(res);
                    }
                }
            }
        }
        Py_XDECREF(k);
        Py_DECREF(ev);
        if (r < 0) goto done;
    }
    ok = 1;
done:
    Py_DECREF(early);
    Py_DECREF(seq);
    if (!ok) return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"warm_pass", warm_pass, METH_VARARGS,
     "warm_pass(events, warm, phase_of, early_phases, on_cleanup, alloc, free, cleanup, cb, trace)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "leaks", "LeakTracker's per-event pass.", -1, methods};

PyMODINIT_FUNC PyInit_leaks(void) {
    s_kind = PyUnicode_InternFromString("kind");
    s_bt = PyUnicode_InternFromString("buffer_type");
    s_pid = PyUnicode_InternFromString("pid");
    s_dev = PyUnicode_InternFromString("device");
    s_bid = PyUnicode_InternFromString("buffer_id");
    s_size = PyUnicode_InternFromString("size");
    s_ts = PyUnicode_InternFromString("ts_ns");
    if (!s_kind || !s_bt || !s_pid || !s_dev || !s_bid || !s_size || !s_ts) return NULL;
    return PyModule_Create(&module);
}
