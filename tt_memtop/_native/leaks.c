/* The leak tracker's warm-up set (tt_memtop.core.leaks.LeakTracker), in C.
 *
 * The warm-up set: live buffers (below CB, not TRACE) allocated while their process's live phase
 * was loading, warm-up or idle, keyed like the registry (buffer_id << 8 | device, or (device,
 * buffer_id) for other devices), each with its allocation time; FREE and CLEANUP take them out, and
 * so does an ALLOC of the key that is not one (a new buffer under it); CLEANUP events also go to a
 * callback (the reclaimed table). Which process holds one and its size are read from the registry's
 * row when a process starts replaying (it has them): the set keeps the time only.
 *
 *   WarmSet()   key -> alloc ts as a dict would; 16-byte slots for int keys below 2^64 - 1 and int
 *               times (Robin Hood, up to 90 % full), a dict beside it for the rest; ~22 B an entry
 *               (a dict entry, its key int and a (pid, size, ts) tuple were ~200 B). Keys are the
 *               pass's (ints, tuples): a bool or a float equal to an int key is another key here
 *   setup(Event)   once, from leaks.py: the Event class, whose slots the pass reads directly
 *   warm_pass(events, warm, phase_of, early_phases, on_cleanup, alloc, free, cleanup, cb, trace) -> None
 *
 * The same operations on the same objects as leaks._warm_pass, the reference; tests run both.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <structmember.h>

static PyObject *s_kind, *s_bt, *s_pid, *s_dev, *s_bid, *s_size, *s_ts, *s_pop;

#include "bigalloc.h"

/* ---------------------------------------------------------------- WarmSet */
typedef struct {
    uint64_t key; /* the int key + 1; 0: an empty slot */
    int64_t ts;
} ws_slot;

typedef struct {
    PyObject_HEAD
    ws_slot *s;
    Py_ssize_t cap, n;
    PyObject *extra; /* NULL or a dict: keys and times that do not pack */
} WarmSet;

static PyTypeObject WarmSet_Type;

static inline size_t ws_home(uint64_t key, size_t cap) {
    uint64_t h = key * 0x9E3779B97F4A7C15ULL;
    return (size_t)(((unsigned __int128)h * cap) >> 64);
}
static inline size_t ws_dist(const WarmSet *t, size_t i) {
    size_t h = ws_home(t->s[i].key, (size_t)t->cap);
    return i >= h ? i - h : i + (size_t)t->cap - h;
}
static inline Py_ssize_t ws_find(const WarmSet *t, uint64_t key) {
    if (t->n == 0) return -1;
    size_t cap = (size_t)t->cap, i = ws_home(key, cap), d = 0;
    for (;;) {
        uint64_t k = t->s[i].key;
        if (k == key) return (Py_ssize_t)i;
        if (k == 0 || ws_dist(t, i) < d) return -1;
        if (++i == cap) i = 0;
        d++;
    }
}
static void ws_insert_new(ws_slot *s, size_t cap, ws_slot e) {
    size_t i = ws_home(e.key, cap), d = 0;
    for (;;) {
        if (s[i].key == 0) {
            s[i] = e;
            return;
        }
        size_t h = ws_home(s[i].key, cap), di = i >= h ? i - h : i + cap - h;
        if (di < d) {
            ws_slot x = s[i];
            s[i] = e;
            e = x;
            d = di;
        }
        if (++i == cap) i = 0;
        d++;
    }
}
static int ws_resize(WarmSet *t, Py_ssize_t cap) {
    ws_slot *s = big_calloc((size_t)cap, sizeof(ws_slot));
    if (s == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < t->cap; i++)
        if (t->s[i].key) ws_insert_new(s, (size_t)cap, t->s[i]);
    big_free(t->s, (size_t)t->cap, sizeof(ws_slot));
    t->s = s;
    t->cap = cap;
    return 0;
}
static int ws_put(WarmSet *t, uint64_t key, int64_t ts) {
    Py_ssize_t i = ws_find(t, key);
    if (i >= 0) {
        t->s[i].ts = ts;
        return 0;
    }
    if ((t->n + 1) * 10 > t->cap * 9) {
        Py_ssize_t cap = t->cap < 8 ? 8 : t->cap < 4096 ? 2 * t->cap : t->cap + t->cap / 2;
        if (ws_resize(t, cap) < 0) return -1;
    }
    ws_slot e = {key, ts};
    ws_insert_new(t->s, (size_t)t->cap, e);
    t->n++;
    return 0;
}
static void ws_remove_at(WarmSet *t, Py_ssize_t i) {
    size_t cap = (size_t)t->cap, j = (size_t)i;
    for (;;) {
        size_t k = j + 1 == cap ? 0 : j + 1;
        if (t->s[k].key == 0 || ws_dist(t, k) == 0) break;
        t->s[j] = t->s[k];
        j = k;
    }
    t->s[j].key = 0;
    t->n--;
    if (t->cap > 64 && t->n * 5 < t->cap) { /* under a fifth full: back to about half full */
        PyObject *et, *ev, *tb;
        PyErr_Fetch(&et, &ev, &tb);
        if (ws_resize(t, t->n * 2 > 8 ? t->n * 2 : 8) < 0) PyErr_Clear(); /* stays as it was */
        PyErr_Restore(et, ev, tb);
    }
}
static inline int ws_extra_any(const WarmSet *t) { return t->extra != NULL && PyDict_GET_SIZE(t->extra) > 0; }

/* an int key that packs: 1 (*out = key + 1), 0 not, -1 error */
static int ws_key_of(PyObject *key, uint64_t *out) {
    if (!PyLong_CheckExact(key)) return 0;
    int o = 0;
    long long v = PyLong_AsLongLongAndOverflow(key, &o);
    if (v == -1 && PyErr_Occurred()) return -1;
    if (!o) {
        if (v < 0) return 0;
        *out = (uint64_t)v + 1;
        return 1;
    }
    if (o < 0) return 0;
    unsigned long long u = PyLong_AsUnsignedLongLong(key);
    if (u == (unsigned long long)-1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError)) return -1;
        PyErr_Clear();
        return 0;
    }
    if (u == UINT64_MAX) return 0;
    *out = (uint64_t)u + 1;
    return 1;
}
static int ws_ts_of(PyObject *v, int64_t *ts) {
    if (!PyLong_CheckExact(v)) return 0;
    int o = 0;
    long long x = PyLong_AsLongLongAndOverflow(v, &o);
    if (x == -1 && PyErr_Occurred()) return -1;
    if (o) return 0;
    *ts = x;
    return 1;
}

static PyObject *ws_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    if (PyTuple_GET_SIZE(args) || (kw && PyDict_GET_SIZE(kw))) {
        PyErr_SetString(PyExc_TypeError, "WarmSet() takes no arguments");
        return NULL;
    }
    return type->tp_alloc(type, 0);
}
static int ws_traverse(WarmSet *t, visitproc visit, void *arg) {
    Py_VISIT(t->extra);
    return 0;
}
static int ws_clear(WarmSet *t) {
    Py_CLEAR(t->extra);
    return 0;
}
static void ws_dealloc(WarmSet *t) {
    PyObject_GC_UnTrack(t);
    ws_clear(t);
    big_free(t->s, (size_t)t->cap, sizeof(ws_slot));
    Py_TYPE(t)->tp_free((PyObject *)t);
}
static PyObject *ws_lookup(WarmSet *t, PyObject *key, PyObject *dflt) {
    uint64_t k;
    int p = ws_key_of(key, &k);
    if (p < 0) return NULL;
    if (p) {
        Py_ssize_t i = ws_find(t, k);
        if (i >= 0) return PyLong_FromLongLong(t->s[i].ts);
    }
    if (ws_extra_any(t)) {
        PyObject *v = PyDict_GetItemWithError(t->extra, key);
        if (v != NULL) return Py_NewRef(v);
        if (PyErr_Occurred()) return NULL;
    }
    if (dflt == NULL) {
        PyErr_SetObject(PyExc_KeyError, key);
        return NULL;
    }
    return Py_NewRef(dflt);
}
static PyObject *ws_get(WarmSet *t, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "get(key, default=None)");
        return NULL;
    }
    return ws_lookup(t, args[0], nargs > 1 ? args[1] : Py_None);
}
/* remove key: 1 removed (*ts: its value, new ref, if ts is not NULL), 0 absent, -1 error */
static int ws_discard(WarmSet *t, PyObject *key, PyObject **ts) {
    uint64_t k;
    int p = ws_key_of(key, &k);
    if (p < 0) return -1;
    if (p) {
        Py_ssize_t i = ws_find(t, k);
        if (i >= 0) {
            if (ts != NULL && (*ts = PyLong_FromLongLong(t->s[i].ts)) == NULL) return -1;
            ws_remove_at(t, i);
            return 1;
        }
    }
    if (!ws_extra_any(t)) return 0;
    PyObject *v = PyDict_GetItemWithError(t->extra, key);
    if (v == NULL) return PyErr_Occurred() ? -1 : 0;
    if (ts != NULL) *ts = Py_NewRef(v);
    if (PyDict_DelItem(t->extra, key) < 0) {
        if (ts != NULL) Py_CLEAR(*ts);
        return -1;
    }
    return 1;
}
static PyObject *ws_pop(WarmSet *t, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "pop(key[, default])");
        return NULL;
    }
    PyObject *v = NULL;
    int r = ws_discard(t, args[0], &v);
    if (r < 0) return NULL;
    if (r) return v;
    if (nargs > 1) return Py_NewRef(args[1]);
    PyErr_SetObject(PyExc_KeyError, args[0]);
    return NULL;
}
static int ws_set(WarmSet *t, PyObject *key, PyObject *value) {
    uint64_t k;
    int64_t ts;
    int p = ws_key_of(key, &k);
    if (p < 0) return -1;
    int v = p ? ws_ts_of(value, &ts) : 0;
    if (v < 0) return -1;
    if (v) {
        if (ws_put(t, k, ts) < 0) return -1;
        if (ws_extra_any(t)) {
            int r = PyDict_Contains(t->extra, key);
            if (r < 0 || (r && PyDict_DelItem(t->extra, key) < 0)) return -1;
        }
        return 0;
    }
    if (p) {
        Py_ssize_t i = ws_find(t, k);
        if (i >= 0) ws_remove_at(t, i);
    }
    if (t->extra == NULL && (t->extra = PyDict_New()) == NULL) return -1;
    return PyDict_SetItem(t->extra, key, value);
}
static PyObject *ws_subscript(WarmSet *t, PyObject *key) { return ws_lookup(t, key, NULL); }
static int ws_ass(WarmSet *t, PyObject *key, PyObject *value) {
    if (value != NULL) return ws_set(t, key, value);
    int r = ws_discard(t, key, NULL);
    if (r == 0) PyErr_SetObject(PyExc_KeyError, key);
    return r > 0 ? 0 : -1;
}
static Py_ssize_t ws_len(WarmSet *t) { return t->n + (t->extra ? PyDict_GET_SIZE(t->extra) : 0); }
static int ws_contains(WarmSet *t, PyObject *key) {
    uint64_t k;
    int p = ws_key_of(key, &k);
    if (p < 0) return -1;
    if (p && ws_find(t, k) >= 0) return 1;
    return ws_extra_any(t) ? PyDict_Contains(t->extra, key) : 0;
}
static PyObject *ws_key(const ws_slot *e) { return PyLong_FromUnsignedLongLong(e->key - 1); }
/* [(key, ts)], the compact part in slot order, then the dict's */
static PyObject *ws_items(WarmSet *t, PyObject *unused) {
    PyObject *out = PyList_New(0);
    if (out == NULL) return NULL;
    for (Py_ssize_t i = 0; i < t->cap; i++) {
        if (!t->s[i].key) continue;
        PyObject *k = ws_key(&t->s[i]), *v = PyLong_FromLongLong(t->s[i].ts);
        PyObject *kv = k && v ? PyTuple_Pack(2, k, v) : NULL;
        Py_XDECREF(k);
        Py_XDECREF(v);
        if (kv == NULL || PyList_Append(out, kv) < 0) {
            Py_XDECREF(kv);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(kv);
    }
    if (t->extra != NULL) {
        PyObject *kv, *rest = PyDict_Items(t->extra);
        if (rest == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(rest); i++) {
            kv = PyList_GET_ITEM(rest, i);
            if (PyList_Append(out, kv) < 0) {
                Py_DECREF(rest);
                Py_DECREF(out);
                return NULL;
            }
        }
        Py_DECREF(rest);
    }
    return out;
}
static PyObject *ws_keys(WarmSet *t, PyObject *unused) {
    PyObject *items = ws_items(t, NULL);
    if (items == NULL) return NULL;
    Py_ssize_t n = PyList_GET_SIZE(items);
    PyObject *out = PyList_New(n);
    if (out != NULL)
        for (Py_ssize_t i = 0; i < n; i++) PyList_SET_ITEM(out, i, Py_NewRef(PyTuple_GET_ITEM(PyList_GET_ITEM(items, i), 0)));
    Py_DECREF(items);
    return out;
}
static PyObject *ws_iter(WarmSet *t) {
    PyObject *keys = ws_keys(t, NULL);
    if (keys == NULL) return NULL;
    PyObject *it = PyObject_GetIter(keys);
    Py_DECREF(keys);
    return it;
}
/* within(spans): [(key, ts)] of the entries whose time is in one of the (start, end) spans, a <= ts < b;
 * None when a span is not a pair of ints within 64 bits (the caller's Python loop then) */
static PyObject *ws_within(WarmSet *t, PyObject *spans) {
    PyObject *seq = PySequence_Fast(spans, "spans must be a sequence");
    if (seq == NULL) return NULL;
    Py_ssize_t ns = PySequence_Fast_GET_SIZE(seq);
    long long *ab = PyMem_Malloc(sizeof(long long) * 2 * (size_t)(ns ? ns : 1));
    PyObject *out = NULL;
    if (ab == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t j = 0; j < ns; j++) {
        PyObject *sp = PySequence_Fast_GET_ITEM(seq, j);
        if (!PyTuple_CheckExact(sp) || PyTuple_GET_SIZE(sp) != 2 || !PyLong_CheckExact(PyTuple_GET_ITEM(sp, 0)) ||
            !PyLong_CheckExact(PyTuple_GET_ITEM(sp, 1))) {
            out = Py_NewRef(Py_None);
            goto done;
        }
        int o1 = 0, o2 = 0;
        ab[2 * j] = PyLong_AsLongLongAndOverflow(PyTuple_GET_ITEM(sp, 0), &o1);
        ab[2 * j + 1] = PyLong_AsLongLongAndOverflow(PyTuple_GET_ITEM(sp, 1), &o2);
        if (PyErr_Occurred()) goto done;
        if (o1 || o2) {
            out = Py_NewRef(Py_None);
            goto done;
        }
    }
    if (ws_extra_any(t)) { /* times no slot holds: the caller's loop */
        out = Py_NewRef(Py_None);
        goto done;
    }
    out = PyList_New(0);
    if (out == NULL) goto done;
    for (Py_ssize_t i = 0; i < t->cap; i++) {
        if (!t->s[i].key) continue;
        long long ts = t->s[i].ts;
        int in = 0;
        for (Py_ssize_t j = 0; j < ns && !in; j++) in = ab[2 * j] <= ts && ts < ab[2 * j + 1];
        if (!in) continue;
        PyObject *k = ws_key(&t->s[i]), *v = PyLong_FromLongLong(ts);
        PyObject *kv = k && v ? PyTuple_Pack(2, k, v) : NULL;
        Py_XDECREF(k);
        Py_XDECREF(v);
        if (kv == NULL || PyList_Append(out, kv) < 0) {
            Py_XDECREF(kv);
            Py_CLEAR(out);
            goto done;
        }
        Py_DECREF(kv);
    }
done:
    PyMem_Free(ab);
    Py_DECREF(seq);
    return out;
}
static PyObject *ws_nbytes(WarmSet *t, PyObject *unused) {
    return PyLong_FromSsize_t((Py_ssize_t)sizeof(WarmSet) + t->cap * (Py_ssize_t)sizeof(ws_slot));
}

static PyMethodDef ws_methods[] = {
    {"get", (PyCFunction)(void (*)(void))ws_get, METH_FASTCALL, "get(key, default=None)"},
    {"pop", (PyCFunction)(void (*)(void))ws_pop, METH_FASTCALL, "pop(key[, default])"},
    {"items", (PyCFunction)ws_items, METH_NOARGS, "[(key, ts)]"},
    {"keys", (PyCFunction)ws_keys, METH_NOARGS, "[key]"},
    {"within", (PyCFunction)ws_within, METH_O, "within(spans) -> [(key, ts)] with a <= ts < b for a span, or None"},
    {"nbytes", (PyCFunction)ws_nbytes, METH_NOARGS, "bytes held by the compact part"},
    {NULL, NULL, 0, NULL},
};
static PyMappingMethods ws_mapping = {(lenfunc)ws_len, (binaryfunc)ws_subscript, (objobjargproc)ws_ass};
static PySequenceMethods ws_sequence = {.sq_contains = (objobjproc)ws_contains};

static PyTypeObject WarmSet_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "tt_memtop._native.leaks.WarmSet",
    .tp_basicsize = sizeof(WarmSet),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The leak tracker's warm-up set: key -> alloc ts, compact.",
    .tp_new = ws_new,
    .tp_dealloc = (destructor)ws_dealloc,
    .tp_traverse = (traverseproc)ws_traverse,
    .tp_clear = (inquiry)ws_clear,
    .tp_iter = (getiterfunc)ws_iter,
    .tp_methods = ws_methods,
    .tp_as_mapping = &ws_mapping,
    .tp_as_sequence = &ws_sequence,
};

/* ---------------------------------------------------------------- the pass */
enum { E_KIND, E_BT, E_PID, E_DEV, E_BID, E_SIZE, E_TS, E_N };
static const char *EV_NAMES[E_N] = {"kind", "buffer_type", "pid", "device", "buffer_id", "size", "ts_ns"};
static PyObject **ev_names[E_N] = {&s_kind, &s_bt, &s_pid, &s_dev, &s_bid, &s_size, &s_ts};
static Py_ssize_t ev_off[E_N];
static PyTypeObject *event_type = NULL;

/* a field of an event (new ref): its slot when it is an Event, else getattr */
static inline PyObject *field(PyObject *ev, int f) {
    if (Py_TYPE(ev) == event_type) {
        PyObject *v = *(PyObject **)((char *)ev + ev_off[f]);
        if (v != NULL) return Py_NewRef(v);
    }
    return PyObject_GetAttr(ev, *ev_names[f]);
}

static PyObject *setup(PyObject *self, PyObject *arg) {
    if (!PyType_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "setup(Event)");
        return NULL;
    }
    Py_ssize_t off[E_N];
    for (int i = 0; i < E_N; i++) {
        PyObject *d = PyObject_GetAttrString(arg, EV_NAMES[i]);
        if (d == NULL) return NULL;
        int ok = Py_TYPE(d) == &PyMemberDescr_Type && ((PyMemberDescrObject *)d)->d_member->type == T_OBJECT_EX;
        if (ok) off[i] = ((PyMemberDescrObject *)d)->d_member->offset;
        Py_DECREF(d);
        if (!ok) {
            PyErr_Format(PyExc_TypeError, "Event.%s is not a slot", EV_NAMES[i]);
            return NULL;
        }
    }
    memcpy(ev_off, off, sizeof off);
    Py_XSETREF(event_type, (PyTypeObject *)Py_NewRef(arg));
    Py_RETURN_NONE;
}

/* The warm-set key of (device, buffer_id): a new reference, NULL on error; *packed = key + 1 when it
 * is an int below 2^64 - 1 (else 0). */
static PyObject *warm_key(PyObject *d, PyObject *bid, uint64_t *packed) {
    int ovf = 0;
    *packed = 0;
    long dv = PyLong_AsLongAndOverflow(d, &ovf);
    if (dv == -1 && PyErr_Occurred()) return NULL;
    if (ovf || dv < 0 || dv >= 256) return PyTuple_Pack(2, d, bid);
    long long b = PyLong_AsLongLongAndOverflow(bid, &ovf);
    if (b == -1 && PyErr_Occurred()) return NULL;
    if (!ovf && b >= 0 && b < (1LL << 55)) {
        *packed = ((uint64_t)b << 8 | (uint64_t)dv) + 1;
        return NULL; /* no object needed */
    }
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
static inline PyObject *packed_obj(uint64_t packed) { return PyLong_FromUnsignedLongLong(packed - 1); }

/* warm.pop(key, None) */
static int pop_key(PyObject *warm, PyObject *ev) {
    if (PyObject_Length(warm) == 0) return 0; /* (a WarmSet or a dict: no error) */
    PyObject *d = field(ev, E_DEV), *bid = d ? field(ev, E_BID) : NULL;
    uint64_t packed = 0;
    PyObject *key = bid ? warm_key(d, bid, &packed) : NULL;
    int r = -1;
    if (key == NULL && packed && Py_TYPE(warm) == &WarmSet_Type && !ws_extra_any((WarmSet *)warm)) {
        WarmSet *t = (WarmSet *)warm;
        Py_ssize_t i = ws_find(t, packed);
        if (i >= 0) ws_remove_at(t, i);
        r = 0;
    } else {
        if (key == NULL && packed) key = packed_obj(packed);
        if (key != NULL) {
            if (Py_TYPE(warm) == &WarmSet_Type) {
                r = ws_discard((WarmSet *)warm, key, NULL);
            } else {
                r = PyDict_Contains(warm, key);
                if (r > 0) r = PyDict_DelItem(warm, key);
            }
        }
    }
    Py_XDECREF(key);
    Py_XDECREF(bid);
    Py_XDECREF(d);
    return r < 0 ? -1 : 0;
}
/* warm[key] = ts */
static int put_key(PyObject *warm, PyObject *ev) {
    PyObject *d = field(ev, E_DEV), *bid = d ? field(ev, E_BID) : NULL;
    PyObject *ts = bid ? field(ev, E_TS) : NULL;
    uint64_t packed = 0;
    PyObject *key = ts ? warm_key(d, bid, &packed) : NULL;
    int r = -1;
    int64_t tv;
    int fits = ts && packed ? ws_ts_of(ts, &tv) : 0;
    if (fits < 0) goto done;
    if (fits && Py_TYPE(warm) == &WarmSet_Type && !ws_extra_any((WarmSet *)warm)) {
        r = ws_put((WarmSet *)warm, packed, tv);
    } else if (ts != NULL && (key != NULL || packed)) {
        if (key == NULL && (key = packed_obj(packed)) == NULL) goto done;
        r = PyObject_SetItem(warm, key, ts);
    }
done:
    Py_XDECREF(key);
    Py_XDECREF(ts);
    Py_XDECREF(bid);
    Py_XDECREF(d);
    return r;
}

static PyObject *warm_pass(PyObject *self, PyObject *args) {
    PyObject *events, *warm, *phase_of, *early_phases, *on_cleanup, *k_alloc, *k_free, *k_cleanup;
    long t_cb, t_trace;
    if (!PyArg_ParseTuple(args, "OOOOOOOOll", &events, &warm, &phase_of, &early_phases, &on_cleanup, &k_alloc,
                          &k_free, &k_cleanup, &t_cb, &t_trace))
        return NULL;
    if (Py_TYPE(warm) != &WarmSet_Type && !PyDict_Check(warm)) {
        PyErr_SetString(PyExc_TypeError, "warm must be a WarmSet or a dict");
        return NULL;
    }
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
        PyObject *k = field(ev, E_KIND);
        int r = k ? PyObject_RichCompareBool(k, k_alloc, Py_EQ) : -1;
        if (r > 0) {
            r = 0;
            PyObject *bt = field(ev, E_BT);
            long t = bt ? PyLong_AsLong(bt) : -1;
            Py_XDECREF(bt);
            if (t == -1 && PyErr_Occurred()) {
                r = -1;
            } else if (t < t_cb) { /* the registry's buffer id space: the key names this ALLOC's buffer now */
                int is_early = 0;
                if (phase_of != Py_None && t != t_trace) {
                    PyObject *pid = field(ev, E_PID);
                    PyObject *e = pid ? PyDict_GetItemWithError(early, pid) : NULL; /* borrowed */
                    is_early = -1;
                    if (e != NULL) {
                        is_early = e == Py_True;
                    } else if (pid != NULL && !PyErr_Occurred()) {
                        PyObject *ph = PyObject_CallOneArg(phase_of, pid);
                        is_early = ph ? PySequence_Contains(early_phases, ph) : -1;
                        Py_XDECREF(ph);
                        if (is_early >= 0 && PyDict_SetItem(early, pid, is_early ? Py_True : Py_False) < 0)
                            is_early = -1;
                    }
                    Py_XDECREF(pid);
                }
                if (is_early > 0)
                    r = put_key(warm, ev);
                else if (is_early == 0)
                    r = pop_key(warm, ev);
                else
                    r = -1;
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
    {"setup", setup, METH_O, "setup(Event)"},
    {"warm_pass", warm_pass, METH_VARARGS,
     "warm_pass(events, warm, phase_of, early_phases, on_cleanup, alloc, free, cleanup, cb, trace)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "leaks", "LeakTracker's warm-up set and per-event pass.",
                                    -1, methods};

PyMODINIT_FUNC PyInit_leaks(void) {
    s_kind = PyUnicode_InternFromString("kind");
    s_bt = PyUnicode_InternFromString("buffer_type");
    s_pid = PyUnicode_InternFromString("pid");
    s_dev = PyUnicode_InternFromString("device");
    s_bid = PyUnicode_InternFromString("buffer_id");
    s_size = PyUnicode_InternFromString("size");
    s_ts = PyUnicode_InternFromString("ts_ns");
    s_pop = PyUnicode_InternFromString("pop");
    if (!s_kind || !s_bt || !s_pid || !s_dev || !s_bid || !s_size || !s_ts || !s_pop) return NULL;
    if (PyType_Ready(&WarmSet_Type) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (PyModule_AddObjectRef(m, "WarmSet", (PyObject *)&WarmSet_Type) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
