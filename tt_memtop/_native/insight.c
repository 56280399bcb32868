/* The per-event pass of tt_memtop.core.insight.Insight.observe, in C.
 *
 * Insight folds every ALLOC / FREE / CLEANUP into running peak counters per device x type and per
 * PID x type, and queues each buffer's new state for the bank maps. Insight._observe_pass is the
 * reference; this leaves the state it leaves (the same values, dict and set orders included), by
 * one of two paths: the batch's counters as C integers, read from the rows' lists once and written
 * back once (observe_fast, when every value fits well inside 64 bits and the batch has at most 64
 * devices and PIDs), or the same operations on the Python objects in the same order
 * (observe_objects). Tests run all three.
 *
 *   setup(Event, alloc, free, cleanup, ntypes, cb, trace, l1_small, mapped, bars)   once, from insight
 *   observe_pass(events, peaks, dev_rows, pid_rows, pend, last_alloc, cbs, regions) -> bool
 *     (False, having changed nothing, when an item is not exactly an Event: the caller runs the pure pass)
 *   end_pass(dev_rows, pid_rows, peaks, ts_end, recorded, record, ts)   the end of the batch (_end_pass)
 *   Pending()   the pending bank-map changes as C integers (a dict's behaviour, see below)
 *   set_fast(flag)   tests: the object path only
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <structmember.h>

enum { S_KIND, S_PID, S_DEV, S_BT, S_BID, S_SIZE, S_TS, NSLOTS };
static const char *SLOT_NAMES[NSLOTS] = {"kind", "pid", "device", "buffer_type", "buffer_id", "size", "ts_ns"};
static Py_ssize_t slot_off[NSLOTS];
static PyTypeObject *event_type = NULL;
static PyObject *k_alloc = NULL, *k_free = NULL, *k_cleanup = NULL;
static long ntypes = 7, t_cb = 5, t_trace = 3, t_small = 2;
static unsigned mapped_mask = 0; /* bit t: type t has a place in the bank maps */
enum { NBARS = 2 };
static unsigned bar_types[NBARS] = {0, 0}; /* bit t: type t is stacked in bar b (the meters' DRAM / L1 bars) */
static PyObject *zero = NULL, *s_dev = NULL, *s_pid = NULL, *s_bars = NULL;
static int use_fast = 1;

static PyObject *setup(PyObject *self, PyObject *args) {
    PyObject *type, *a, *f, *c, *mapped, *bars;
    if (!PyArg_ParseTuple(args, "O!OOOllllOO!", &PyType_Type, &type, &a, &f, &c, &ntypes, &t_cb, &t_trace, &t_small,
                          &mapped, &PyTuple_Type, &bars))
        return NULL;
    if (PyTuple_GET_SIZE(bars) != NBARS) {
        PyErr_SetString(PyExc_ValueError, "bars must be a tuple of 2 tuples of buffer types");
        return NULL;
    }
    unsigned bmasks[NBARS] = {0, 0};
    for (int b = 0; b < NBARS; b++) {
        PyObject *bar = PyTuple_GET_ITEM(bars, b);
        if (!PyTuple_Check(bar)) {
            PyErr_SetString(PyExc_TypeError, "each bar must be a tuple of buffer types");
            return NULL;
        }
        for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(bar); j++) {
            long v = PyLong_AsLong(PyTuple_GET_ITEM(bar, j));
            if (v == -1 && PyErr_Occurred()) return NULL;
            if (v >= 0 && v < 31) bmasks[b] |= 1u << v;
        }
    }
    if (ntypes < 1 || ntypes > 30) {
        PyErr_SetString(PyExc_ValueError, "ntypes out of range");
        return NULL;
    }
    Py_ssize_t offs[NSLOTS];
    for (int i = 0; i < NSLOTS; i++) {
        PyObject *d = PyObject_GetAttrString(type, SLOT_NAMES[i]);
        if (d == NULL) return NULL;
        int ok = Py_TYPE(d) == &PyMemberDescr_Type && ((PyMemberDescrObject *)d)->d_member->type == T_OBJECT_EX;
        if (ok) offs[i] = ((PyMemberDescrObject *)d)->d_member->offset;
        Py_DECREF(d);
        if (!ok) {
            PyErr_Format(PyExc_TypeError, "Event.%s is not a slot", SLOT_NAMES[i]);
            return NULL;
        }
    }
    unsigned mask = 0;
    PyObject *it = PyObject_GetIter(mapped), *item;
    if (it == NULL) return NULL;
    while ((item = PyIter_Next(it)) != NULL) {
        long v = PyLong_AsLong(item);
        Py_DECREF(item);
        if (v == -1 && PyErr_Occurred()) break;
        if (v >= 0 && v < 31) mask |= 1u << v;
    }
    Py_DECREF(it);
    if (PyErr_Occurred()) return NULL;
    memcpy(slot_off, offs, sizeof offs);
    mapped_mask = mask;
    bar_types[0] = bmasks[0];
    bar_types[1] = bmasks[1];
    Py_INCREF(type);
    Py_XSETREF(event_type, (PyTypeObject *)type);
    Py_INCREF(a);
    Py_XSETREF(k_alloc, a);
    Py_INCREF(f);
    Py_XSETREF(k_free, f);
    Py_INCREF(c);
    Py_XSETREF(k_cleanup, c);
    Py_RETURN_NONE;
}

/* A borrowed slot value of an Event (never NULL after the type check: AttributeError otherwise). */
static inline PyObject *slot(PyObject *ev, int i) {
    PyObject *v = *(PyObject **)((char *)ev + slot_off[i]);
    if (v == NULL) PyErr_Format(PyExc_AttributeError, "Event has no %s", SLOT_NAMES[i]);
    return v;
}

/* lst[t] = lst[t] + size; returns a new reference to the sum (NULL on error). */
static PyObject *add_at(PyObject *lst, Py_ssize_t t, PyObject *size) {
    if (!PyList_Check(lst) || t >= PyList_GET_SIZE(lst)) {
        PyErr_SetString(PyExc_TypeError, "peak counters must be lists of one int per buffer type");
        return NULL;
    }
    PyObject *v = PyNumber_Add(PyList_GET_ITEM(lst, t), size);
    if (v == NULL) return NULL;
    Py_INCREF(v);
    PyList_SetItem(lst, t, v); /* steals the extra reference */
    return v;
}

static inline int list_gt(PyObject *v, PyObject *lst, Py_ssize_t t) {
    if (!PyList_Check(lst) || t >= PyList_GET_SIZE(lst)) {
        PyErr_SetString(PyExc_TypeError, "peak counters must be lists of one int per buffer type");
        return -1;
    }
    return PyObject_RichCompareBool(v, PyList_GET_ITEM(lst, t), Py_GT);
}

static inline int list_set(PyObject *lst, Py_ssize_t t, PyObject *v) {
    Py_INCREF(v);
    return PyList_SetItem(lst, t, v);
}

/* (a << shift) | b for Python ints a >= 0 (checked by the caller), small b >= 0. */
static PyObject *shift_or(PyObject *a, int shift, long b) {
    int overflow = 0;
    long long x = PyLong_AsLongLongAndOverflow(a, &overflow);
    if (x == -1 && PyErr_Occurred()) return NULL;
    if (!overflow && x >= 0 && x < (1LL << (62 - shift))) return PyLong_FromLongLong((x << shift) | b);
    PyObject *s = PyLong_FromLong(shift), *bb = PyLong_FromLong(b), *out = NULL;
    if (s && bb) {
        PyObject *l = PyNumber_Lshift(a, s);
        if (l) {
            out = PyNumber_Or(l, bb);
            Py_DECREF(l);
        }
    }
    Py_XDECREF(s);
    Py_XDECREF(bb);
    return out;
}

static int set_item_new(PyObject *d, PyObject *key, PyObject *val) {
    if (key == NULL || val == NULL) {
        Py_XDECREF(key);
        Py_XDECREF(val);
        return -1;
    }
    int r = PyDict_SetItem(d, key, val);
    Py_DECREF(key);
    Py_DECREF(val);
    return r;
}

/* ------------------------------------------------------------------ Pending: the pending dict, in C
 *
 * Insight._pending maps buffer_id << 8 | device -> size << 3 | type (alloc) or -1 - type (free), in the
 * order keys were first stored, until _flush hands it to the bank maps. At a monitor's rates it holds
 * up to a few hundred thousand keys, and a dict of int objects costs several cache misses per store
 * (index, entry, the stored key, the old value) plus two ints made and two freed. This is the same
 * mapping as C integers: an open-addressing index over an array of (key, value) in first-store order.
 * It behaves as the dict would for what Insight does with it (store, len, items() in order, get);
 * a key or value outside 64 bits turns it into a plain dict inside (same order) for good. */
typedef struct {
    uint64_t key;
    int64_t val;
} PEntry;

typedef struct {
    PyObject_HEAD
    PEntry *ent;
    uint32_t n, cap; /* entries in use, allocated */
    uint32_t *ix;    /* entry + 1 per bucket, 0 = empty; power-of-two buckets, at most half full */
    uint32_t mask;
    PyObject *dict;  /* not NULL: every entry lives here instead (a key or value past 64 bits was stored) */
} Pending;

static PyTypeObject PendingType;

static inline uint32_t phash(uint64_t k, uint32_t mask) {
    uint64_t h = k * 0x9E3779B97F4A7C15ull;
    return (uint32_t)(h >> 32 ^ h) & mask;
}

static int pending_grow(Pending *p) {
    uint32_t nb = p->mask ? (p->mask + 1) * 2 : 1024;
    uint32_t *ix = PyMem_Calloc(nb, sizeof(uint32_t));
    if (ix == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (uint32_t e = 0; e < p->n; e++) {
        uint32_t i = phash(p->ent[e].key, nb - 1);
        while (ix[i]) i = (i + 1) & (nb - 1);
        ix[i] = e + 1;
    }
    PyMem_Free(p->ix);
    p->ix = ix;
    p->mask = nb - 1;
    return 0;
}

/* pend[key] = val as C integers (not in dict mode) */
static int pending_put(Pending *p, uint64_t key, int64_t val) {
    if (p->ix == NULL || (uint64_t)(p->n + 1) * 2 > (uint64_t)p->mask + 1) {
        if (p->n >= 0x7FFFFFF0u) {
            PyErr_SetString(PyExc_OverflowError, "pending map full");
            return -1;
        }
        if (pending_grow(p) < 0) return -1;
    }
    uint32_t i = phash(key, p->mask);
    for (;;) {
        uint32_t e = p->ix[i];
        if (!e) break;
        if (p->ent[e - 1].key == key) {
            p->ent[e - 1].val = val;
            return 0;
        }
        i = (i + 1) & p->mask;
    }
    if (p->n == p->cap) {
        uint32_t cap = p->cap ? p->cap * 2 : 512;
        PEntry *ent = PyMem_Realloc(p->ent, (size_t)cap * sizeof(PEntry));
        if (ent == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        p->ent = ent;
        p->cap = cap;
    }
    p->ent[p->n] = (PEntry){key, val};
    p->ix[i] = ++p->n;
    return 0;
}

/* Every entry into a dict (same order), for good: a key or a value C integers do not hold */
static int pending_to_dict(Pending *p) {
    PyObject *d = PyDict_New();
    if (d == NULL) return -1;
    for (uint32_t e = 0; e < p->n; e++) {
        PyObject *k = PyLong_FromUnsignedLongLong(p->ent[e].key), *v = PyLong_FromLongLong(p->ent[e].val);
        int bad = k == NULL || v == NULL || PyDict_SetItem(d, k, v) < 0;
        Py_XDECREF(k);
        Py_XDECREF(v);
        if (bad) {
            Py_DECREF(d);
            return -1;
        }
    }
    PyMem_Free(p->ent);
    PyMem_Free(p->ix);
    p->ent = NULL;
    p->ix = NULL;
    p->n = p->cap = p->mask = 0;
    p->dict = d;
    return 0;
}

static int pending_ass(Pending *p, PyObject *key, PyObject *val) {
    if (val == NULL) {
        PyErr_SetString(PyExc_TypeError, "Pending does not delete keys");
        return -1;
    }
    if (p->dict == NULL) {
        if (PyLong_CheckExact(key) && PyLong_CheckExact(val)) {
            unsigned long long k = PyLong_AsUnsignedLongLong(key);
            if (!(k == (unsigned long long)-1 && PyErr_Occurred())) {
                int ovf = 0;
                long long v = PyLong_AsLongLongAndOverflow(val, &ovf);
                if (v == -1 && PyErr_Occurred()) return -1;
                if (!ovf) return pending_put(p, k, v);
            }
            PyErr_Clear();
        }
        if (pending_to_dict(p) < 0) return -1;
    }
    return PyDict_SetItem(p->dict, key, val);
}

static int64_t pending_find(Pending *p, uint64_t key) {
    if (p->ix == NULL) return -1;
    uint32_t i = phash(key, p->mask);
    for (;;) {
        uint32_t e = p->ix[i];
        if (!e) return -1;
        if (p->ent[e - 1].key == key) return e - 1;
        i = (i + 1) & p->mask;
    }
}

static PyObject *pending_subscript(Pending *p, PyObject *key) {
    if (p->dict != NULL) {
        PyObject *v = PyDict_GetItemWithError(p->dict, key);
        if (v == NULL && !PyErr_Occurred()) PyErr_SetObject(PyExc_KeyError, key);
        return Py_XNewRef(v);
    }
    if (PyLong_Check(key)) { /* True finds 1, as in a dict */
        unsigned long long k = PyLong_AsUnsignedLongLong(key);
        if (!(k == (unsigned long long)-1 && PyErr_Occurred())) {
            int64_t e = pending_find(p, k);
            if (e >= 0) return PyLong_FromLongLong(p->ent[e].val);
        }
        PyErr_Clear();
    } else if (PyObject_Hash(key) == -1) {
        return NULL;
    }
    PyObject *t = PyTuple_Pack(1, key);
    if (t != NULL) {
        PyErr_SetObject(PyExc_KeyError, t);
        Py_DECREF(t);
    }
    return NULL;
}

static Py_ssize_t pending_len(Pending *p) { return p->dict != NULL ? PyDict_GET_SIZE(p->dict) : (Py_ssize_t)p->n; }

static PyObject *pending_items(Pending *p, PyObject *Py_UNUSED(ignored)) {
    if (p->dict != NULL) return PyObject_CallMethod(p->dict, "items", NULL);
    PyObject *out = PyList_New(p->n);
    if (out == NULL) return NULL;
    for (uint32_t e = 0; e < p->n; e++) {
        PyObject *t = Py_BuildValue("(KL)", (unsigned long long)p->ent[e].key, (long long)p->ent[e].val);
        if (t == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, e, t);
    }
    return out;
}

static PyObject *pending_get(Pending *p, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "get(key[, default])");
        return NULL;
    }
    PyObject *v = pending_subscript(p, args[0]);
    if (v == NULL && PyErr_ExceptionMatches(PyExc_KeyError)) {
        PyErr_Clear();
        return Py_NewRef(nargs == 2 ? args[1] : Py_None);
    }
    return v;
}

static PyObject *pending_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    if (PyTuple_GET_SIZE(args) || (kw && PyDict_GET_SIZE(kw))) {
        PyErr_SetString(PyExc_TypeError, "Pending() takes no arguments");
        return NULL;
    }
    Pending *p = (Pending *)type->tp_alloc(type, 0);
    return (PyObject *)p; /* zeroed: empty */
}

static void pending_dealloc(Pending *p) {
    PyMem_Free(p->ent);
    PyMem_Free(p->ix);
    Py_XDECREF(p->dict);
    Py_TYPE(p)->tp_free((PyObject *)p);
}

static PyMappingMethods pending_mapping = {(lenfunc)pending_len, (binaryfunc)pending_subscript,
                                           (objobjargproc)pending_ass};

static PyMethodDef pending_methods[] = {
    {"items", (PyCFunction)pending_items, METH_NOARGS, "the (key, value) pairs in first-store order"},
    {"get", (PyCFunction)(void (*)(void))pending_get, METH_FASTCALL, "get(key[, default])"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject PendingType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "tt_memtop._native.insight.Pending",
    .tp_basicsize = sizeof(Pending),
    .tp_dealloc = (destructor)pending_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Insight's pending buffer changes: an int -> int mapping in first-store order (see insight.c).",
    .tp_as_mapping = &pending_mapping,
    .tp_methods = pending_methods,
    .tp_new = pending_new,
};

/* pend[key] = val from the passes: C integers when pend is a Pending and they fit, else a store */
static int pend_store(PyObject *pend, PyObject *key, PyObject *val) {
    return Py_TYPE(pend) == &PendingType ? pending_ass((Pending *)pend, key, val) : PyDict_SetItem(pend, key, val);
}

static int pend_set_new(PyObject *pend, PyObject *key, PyObject *val) {
    if (key == NULL || val == NULL) {
        Py_XDECREF(key);
        Py_XDECREF(val);
        return -1;
    }
    int r = pend_store(pend, key, val);
    Py_DECREF(key);
    Py_DECREF(val);
    return r;
}

/* Raise bar b's peak of a device row (cur, peak, at, bmax, bar_peak, bar_at) to its stacked sum now:
 * the running counters of the types below CB, the batch's start (bmax) for CB / KERNEL. */
static int bar_bump(PyObject *r, int b, long bar_mask, PyObject *ts) {
    PyObject *cur = PyTuple_GET_ITEM(r, 0), *bmax = PyTuple_GET_ITEM(r, 3);
    PyObject *bpk = PyTuple_GET_ITEM(r, 4), *bat = PyTuple_GET_ITEM(r, 5);
    if (!PyList_Check(cur) || !PyList_Check(bmax) || !PyList_Check(bpk) || !PyList_Check(bat) ||
        PyList_GET_SIZE(bpk) < NBARS || PyList_GET_SIZE(bat) < NBARS) {
        PyErr_SetString(PyExc_TypeError, "bad device row");
        return -1;
    }
    PyObject *sum = zero;
    Py_INCREF(sum);
    for (long u = 0; u < ntypes && u < 31; u++) {
        if (!((bar_types[b] >> u) & 1) || !((bar_mask >> u) & 1)) continue;
        PyObject *src = u < t_cb ? cur : bmax;
        if (u >= PyList_GET_SIZE(src)) {
            Py_DECREF(sum);
            PyErr_SetString(PyExc_TypeError, "peak counters must be lists of one int per buffer type");
            return -1;
        }
        PyObject *nsum = PyNumber_Add(sum, PyList_GET_ITEM(src, u));
        Py_DECREF(sum);
        if (nsum == NULL) return -1;
        sum = nsum;
    }
    int gt = PyObject_RichCompareBool(sum, PyList_GET_ITEM(bpk, b), Py_GT);
    if (gt > 0 && (list_set(bpk, b, sum) < 0 || list_set(bat, b, ts) < 0)) gt = -1;
    Py_DECREF(sum);
    return gt < 0 ? -1 : 0;
}

/* The device row of dev_rows for `d`, made if missing: (current, peak, peak_at, the batch's max, bar peaks,
 * bar times). Borrowed (the dict holds it); NULL on error. */
static PyObject *device_row(PyObject *dev_rows, PyObject *peaks, PyObject *d) {
    PyObject *r = PyDict_GetItemWithError(dev_rows, d);
    if (r == NULL) {
        if (PyErr_Occurred()) return NULL;
        PyObject *got = PyObject_CallMethodObjArgs(peaks, s_dev, d, NULL);
        if (got == NULL) return NULL;
        if (!PyTuple_Check(got) || PyTuple_GET_SIZE(got) != 3) {
            Py_DECREF(got);
            PyErr_SetString(PyExc_TypeError, "PeakTracker._dev must return (current, peak, peak_at)");
            return NULL;
        }
        PyObject *bars = PyObject_CallMethodObjArgs(peaks, s_bars, d, NULL);
        if (bars == NULL) {
            Py_DECREF(got);
            return NULL;
        }
        if (!PyTuple_Check(bars) || PyTuple_GET_SIZE(bars) != 2 || !PyList_Check(PyTuple_GET_ITEM(bars, 0)) ||
            !PyList_Check(PyTuple_GET_ITEM(bars, 1)) || PyList_GET_SIZE(PyTuple_GET_ITEM(bars, 0)) < NBARS ||
            PyList_GET_SIZE(PyTuple_GET_ITEM(bars, 1)) < NBARS) {
            Py_DECREF(got);
            Py_DECREF(bars);
            PyErr_SetString(PyExc_TypeError, "PeakTracker._bars must return ([2 peaks], [2 times])");
            return NULL;
        }
        PyObject *copy = PySequence_List(PyTuple_GET_ITEM(got, 0));
        PyObject *row = copy ? PyTuple_Pack(6, PyTuple_GET_ITEM(got, 0), PyTuple_GET_ITEM(got, 1),
                                            PyTuple_GET_ITEM(got, 2), copy, PyTuple_GET_ITEM(bars, 0),
                                            PyTuple_GET_ITEM(bars, 1))
                             : NULL;
        Py_DECREF(got);
        Py_DECREF(bars);
        Py_XDECREF(copy);
        if (row == NULL) return NULL;
        int bad = PyDict_SetItem(dev_rows, d, row);
        Py_DECREF(row);
        if (bad) return NULL;
        r = row; /* the dict holds it now */
    }
    if (!PyTuple_Check(r) || PyTuple_GET_SIZE(r) < 6) {
        PyErr_SetString(PyExc_TypeError, "bad device row");
        return NULL;
    }
    return r;
}

/* The PID row of pid_rows for `p`, made if missing: (current, peak, peak_at). Borrowed; NULL on error. */
static PyObject *pid_row(PyObject *pid_rows, PyObject *peaks, PyObject *p) {
    PyObject *r = PyDict_GetItemWithError(pid_rows, p);
    if (r == NULL) {
        if (PyErr_Occurred()) return NULL;
        PyObject *got = PyObject_CallMethodObjArgs(peaks, s_pid, p, NULL);
        if (got == NULL) return NULL;
        int bad = PyDict_SetItem(pid_rows, p, got);
        Py_DECREF(got);
        if (bad) return NULL;
        r = got;
    }
    if (!PyTuple_Check(r) || PyTuple_GET_SIZE(r) < 3) {
        PyErr_SetString(PyExc_TypeError, "bad PID row");
        return NULL;
    }
    return r;
}

/* The pass on the Python objects themselves (any int values): 0, or -1 on error. */
static int observe_objects(PyObject **items, Py_ssize_t n, PyObject *peaks, long bar_mask, PyObject *rose,
                           PyObject *dev_rows, PyObject *pid_rows, PyObject *pend, PyObject *last_alloc, PyObject *cbs,
                           PyObject *regions) {
    PyObject *size = NULL;
    int ok = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *ev = items[i];
        Py_CLEAR(size);
        PyObject *k = slot(ev, S_KIND);
        if (k == NULL) goto done;
        int positive; /* size > 0 */
        if (k == k_alloc) {
            PyObject *s = slot(ev, S_SIZE);
            if (s == NULL) goto done;
            Py_INCREF(s);
            size = s;
        } else if (k == k_free || k == k_cleanup) {
            PyObject *s = slot(ev, S_SIZE);
            if (s == NULL) goto done;
            size = PyNumber_Negative(s);
            if (size == NULL) goto done;
        } else {
            continue;
        }
        positive = PyObject_RichCompareBool(size, zero, Py_GT);
        if (positive < 0) goto done;
        PyObject *tobj = slot(ev, S_BT);
        if (tobj == NULL) goto done;
        long t = PyLong_AsLong(tobj);
        if (t == -1 && PyErr_Occurred()) goto done;
        if (!(0 <= t && t < ntypes)) continue;
        PyObject *d = slot(ev, S_DEV), *ts = slot(ev, S_TS);
        if (d == NULL || ts == NULL) goto done;
        /* ---- the device row: (current, peak, peak_at, the batch's max, bar peaks, bar times) */
        PyObject *r = device_row(dev_rows, peaks, d);
        if (r == NULL) goto done;
        PyObject *v = add_at(PyTuple_GET_ITEM(r, 0), t, size);
        if (v == NULL) goto done;
        if (positive && t < t_cb) {
            int gt = list_gt(v, PyTuple_GET_ITEM(r, 3), t);
            if (gt > 0) {
                if (list_set(PyTuple_GET_ITEM(r, 3), t, v) < 0) gt = -1;
                int gp = gt < 0 ? -1 : list_gt(v, PyTuple_GET_ITEM(r, 1), t);
                if (gp > 0) {
                    PyObject *key = Py_BuildValue("(Ol)", d, t);
                    if (key == NULL || list_set(PyTuple_GET_ITEM(r, 1), t, v) < 0 ||
                        list_set(PyTuple_GET_ITEM(r, 2), t, ts) < 0 || PySet_Add(rose, key) < 0)
                        gp = -1;
                    Py_XDECREF(key);
                }
                if (gp < 0) gt = -1;
            }
            if (gt < 0) {
                Py_DECREF(v);
                goto done;
            }
            if ((bar_mask >> t) & 1) { /* the bar's stacked sum, CB / KERNEL as of the batch's start */
                int b = (bar_types[0] >> t) & 1 ? 0 : 1;
                if (bar_bump(r, b, bar_mask, ts) < 0) {
                    Py_DECREF(v);
                    goto done;
                }
            }
        }
        Py_DECREF(v);
        /* ---- the PID row: (current, peak, peak_at) */
        PyObject *p = slot(ev, S_PID);
        if (p == NULL) goto done;
        r = pid_row(pid_rows, peaks, p);
        if (r == NULL) goto done;
        v = add_at(PyTuple_GET_ITEM(r, 0), t, size);
        if (v == NULL) goto done;
        if (positive && t < t_cb) {
            int gt = list_gt(v, PyTuple_GET_ITEM(r, 1), t);
            if (gt > 0 && (list_set(PyTuple_GET_ITEM(r, 1), t, v) < 0 || list_set(PyTuple_GET_ITEM(r, 2), t, ts) < 0))
                gt = -1;
            if (gt < 0) {
                Py_DECREF(v);
                goto done;
            }
        }
        Py_DECREF(v);
        /* ---- the buffer's new state for the bank maps */
        PyObject *bid = slot(ev, S_BID);
        if (bid == NULL) goto done;
        int bpos = PyObject_RichCompareBool(bid, zero, Py_GT);
        if (bpos < 0) goto done;
        int ovf = 0;
        long dv = PyLong_AsLongAndOverflow(d, &ovf);
        if (dv == -1 && PyErr_Occurred()) goto done;
        if (!bpos || ovf || dv < 0 || dv >= 256) continue;
        if (mapped_mask & (1u << t)) {
            PyObject *key = shift_or(bid, 8, dv);
            if (key == NULL) goto done;
            if (positive) {
                if (pend_set_new(pend, key, shift_or(size, 3, t)) < 0) goto done;
                if (set_item_new(last_alloc, PyLong_FromLong(dv << 3 | t), (Py_INCREF(size), size)) < 0) goto done;
                if (t == t_trace || t == t_small) {
                    PyObject *rec = Py_BuildValue("(lOl)", dv, bid, t);
                    if (rec == NULL) goto done;
                    int bad = PyList_Append(regions, rec);
                    Py_DECREF(rec);
                    if (bad) goto done;
                }
            } else if (pend_set_new(pend, key, PyLong_FromLong(-1 - t)) < 0) {
                goto done;
            }
        } else if (t == t_cb) {
            PyObject *rec = Py_BuildValue("(lOO)", dv, bid, size);
            if (rec == NULL) goto done;
            int bad = PyList_Append(cbs, rec);
            Py_DECREF(rec);
            if (bad) goto done;
        }
    }
    ok = 1;
done:
    Py_XDECREF(size);
    return ok ? 0 : -1;
}


/* ------------------------------------------------------------------ the fast path: counters in C integers
 *
 * The same pass with every running counter of the batch held as a C integer: each device / PID row's
 * lists are read once into C arrays, the events update those, and the lists get the final values (and
 * `rose` the pools whose peak rose, in the order they first rose) at the end — the state the per-event
 * stores leave. Taken when every value involved fits well inside 64 bits (|v| <= 2^62: no sum of two
 * can overflow, and any that would is caught); otherwise nothing is written and the object pass
 * above (observe_objects) runs instead, as it does for a batch with more than MAXROWS devices or PIDs. */
#define LIM (1LL << 62)
#define MAXROWS 64
#define MAXT 16

typedef struct {
    PyObject *key; /* the dict key (borrowed from the event that first had it) */
    long long id;
    PyObject *row; /* borrowed from dev_rows / pid_rows */
    long long cur[MAXT], peak[MAXT], at[MAXT], bmax[MAXT], bpk[NBARS], bat[NBARS];
    unsigned cur_set, peak_set, bmax_set, bar_set; /* what changed (bits: types, bars) */
} Acc;

static inline int fits(PyObject *o, long long *out) {
    if (o == NULL || !PyLong_CheckExact(o)) return 0;
    int ovf = 0;
    long long v = PyLong_AsLongLongAndOverflow(o, &ovf);
    if (v == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    if (ovf || v < -LIM || v > LIM) return 0;
    *out = v;
    return 1;
}

/* lst (a list of at least n ints that fit) into out[0..n) */
static int load_list(PyObject *lst, Py_ssize_t n, long long *out) {
    if (!PyList_CheckExact(lst) || PyList_GET_SIZE(lst) < n) return 0;
    for (Py_ssize_t i = 0; i < n; i++)
        if (!fits(PyList_GET_ITEM(lst, i), &out[i])) return 0;
    return 1;
}

static int store_list(PyObject *lst, unsigned set, const long long *v, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!(set >> i & 1)) continue;
        PyObject *x = PyLong_FromLongLong(v[i]);
        if (x == NULL) return -1;
        PyList_SetItem(lst, i, x); /* steals x; lst was checked to be a list this long */
    }
    return 0;
}

/* The device row of dev_rows for `d` (made as the object pass makes it): borrowed, NULL on error. */
static PyObject *device_row(PyObject *dev_rows, PyObject *peaks, PyObject *d);
static PyObject *pid_row(PyObject *pid_rows, PyObject *peaks, PyObject *p);

/* The pending dict's values repeat (a model allocates the same sizes over and over): a small cache of the
 * int objects by value, so that an update of a pending buffer neither makes a new int nor frees one. */
#define VCACHE 256
static PyObject *vcache_obj[VCACHE];
static long long vcache_val[VCACHE];

static PyObject *cached_value(long long v) {
    unsigned i = (unsigned)(((unsigned long long)v * 0x9E3779B97F4A7C15ull) >> 56);
    if (vcache_obj[i] != NULL && vcache_val[i] == v) return Py_NewRef(vcache_obj[i]);
    PyObject *o = PyLong_FromLongLong(v);
    if (o == NULL) return NULL;
    Py_XSETREF(vcache_obj[i], Py_NewRef(o));
    vcache_val[i] = v;
    return o;
}

/* 1 = done, 0 = declined (nothing written but rows made), -1 = error */
static int observe_fast(PyObject **items, Py_ssize_t n, PyObject *peaks, long bar_mask, PyObject *rose,
                        PyObject *dev_rows, PyObject *pid_rows, PyObject *pend, PyObject *last_alloc, PyObject *cbs,
                        PyObject *regions) {
    Acc devs[MAXROWS], pids[MAXROWS];
    int ndev = 0, npid = 0;
    int rose_dev[MAXROWS * MAXT];
    unsigned char rose_t[MAXROWS * MAXT];
    int nrose = 0;
    unsigned rose_seen[MAXROWS]; /* bit t of device i: already in rose_* */
    int last_d = -1, last_p = -1;
    if (ntypes > 8) return 0; /* a pool's last_alloc key is device << 3 | type */
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *ev = items[i];
        PyObject *k = *(PyObject **)((char *)ev + slot_off[S_KIND]);
        long long size;
        if (k == k_alloc) {
            if (!fits(*(PyObject **)((char *)ev + slot_off[S_SIZE]), &size)) return 0;
        } else if (k == k_free || k == k_cleanup) {
            if (!fits(*(PyObject **)((char *)ev + slot_off[S_SIZE]), &size)) return 0;
            size = -size;
        } else {
            if (k == NULL) return 0;
            continue;
        }
        long long t, ts, did, pidv;
        PyObject *tobj = *(PyObject **)((char *)ev + slot_off[S_BT]);
        if (tobj == NULL || !fits(tobj, &t)) return 0;
        if (!(0 <= t && t < ntypes)) continue;
        PyObject *bido = *(PyObject **)((char *)ev + slot_off[S_BID]);
        if (bido == NULL || !PyLong_CheckExact(bido)) return 0;
        PyObject *d = *(PyObject **)((char *)ev + slot_off[S_DEV]), *p = *(PyObject **)((char *)ev + slot_off[S_PID]);
        PyObject *tso = *(PyObject **)((char *)ev + slot_off[S_TS]);
        if (d == NULL || p == NULL || tso == NULL || !fits(d, &did) || !fits(p, &pidv) || !fits(tso, &ts)) return 0;
        /* ---- the device's accumulators */
        int di = last_d;
        if (di < 0 || devs[di].id != did) {
            for (di = 0; di < ndev && devs[di].id != did; di++) {
            }
            if (di == ndev) {
                if (ndev == MAXROWS) return 0;
                PyObject *r = device_row(dev_rows, peaks, d);
                if (r == NULL) return -1;
                Acc *a = &devs[ndev];
                a->key = d;
                a->id = did;
                a->row = r;
                a->cur_set = a->peak_set = a->bmax_set = a->bar_set = 0;
                if (!load_list(PyTuple_GET_ITEM(r, 0), ntypes, a->cur) ||
                    !load_list(PyTuple_GET_ITEM(r, 1), ntypes, a->peak) ||
                    !load_list(PyTuple_GET_ITEM(r, 2), ntypes, a->at) ||
                    !load_list(PyTuple_GET_ITEM(r, 3), ntypes, a->bmax) ||
                    !load_list(PyTuple_GET_ITEM(r, 4), NBARS, a->bpk) ||
                    !load_list(PyTuple_GET_ITEM(r, 5), NBARS, a->bat))
                    return 0;
                rose_seen[ndev] = 0;
                ndev++;
            }
            last_d = di;
        }
        Acc *a = &devs[di];
        long long v;
        if (__builtin_add_overflow(a->cur[t], size, &v) || v < -LIM || v > LIM) return 0;
        a->cur[t] = v;
        a->cur_set |= 1u << t;
        if (size > 0 && t < t_cb) {
            if (v > a->bmax[t]) {
                a->bmax[t] = v;
                a->bmax_set |= 1u << t;
                if (v > a->peak[t]) {
                    a->peak[t] = v;
                    a->at[t] = ts;
                    a->peak_set |= 1u << t;
                    if (!(rose_seen[di] >> t & 1)) {
                        rose_seen[di] |= 1u << t;
                        rose_dev[nrose] = di;
                        rose_t[nrose++] = (unsigned char)t;
                    }
                }
            }
            if ((bar_mask >> t) & 1) { /* the bar's stacked sum, CB / KERNEL as of the batch's start */
                int b = (bar_types[0] >> t) & 1 ? 0 : 1;
                long long s = 0;
                for (long u = 0; u < ntypes; u++) {
                    if (!((bar_types[b] >> u) & 1) || !((bar_mask >> u) & 1)) continue;
                    if (__builtin_add_overflow(s, u < t_cb ? a->cur[u] : a->bmax[u], &s)) return 0;
                }
                if (s > a->bpk[b]) {
                    a->bpk[b] = s;
                    a->bat[b] = ts;
                    a->bar_set |= 1u << b;
                }
            }
        }
        /* ---- the PID's */
        int pi = last_p;
        if (pi < 0 || pids[pi].id != pidv) {
            for (pi = 0; pi < npid && pids[pi].id != pidv; pi++) {
            }
            if (pi == npid) {
                if (npid == MAXROWS) return 0;
                PyObject *r = pid_row(pid_rows, peaks, p);
                if (r == NULL) return -1;
                Acc *q = &pids[npid];
                q->key = p;
                q->id = pidv;
                q->row = r;
                q->cur_set = q->peak_set = 0;
                if (!load_list(PyTuple_GET_ITEM(r, 0), ntypes, q->cur) ||
                    !load_list(PyTuple_GET_ITEM(r, 1), ntypes, q->peak) ||
                    !load_list(PyTuple_GET_ITEM(r, 2), ntypes, q->at))
                    return 0;
                npid++;
            }
            last_p = pi;
        }
        Acc *q = &pids[pi];
        if (__builtin_add_overflow(q->cur[t], size, &v) || v < -LIM || v > LIM) return 0;
        q->cur[t] = v;
        q->cur_set |= 1u << t;
        if (size > 0 && t < t_cb && v > q->peak[t]) {
            q->peak[t] = v;
            q->at[t] = ts;
            q->peak_set |= 1u << t;
        }
    }
    /* ---- the counters into the lists */
    for (int i = 0; i < ndev; i++) {
        Acc *a = &devs[i];
        PyObject *r = a->row;
        if (store_list(PyTuple_GET_ITEM(r, 0), a->cur_set, a->cur, ntypes) < 0 ||
            store_list(PyTuple_GET_ITEM(r, 1), a->peak_set, a->peak, ntypes) < 0 ||
            store_list(PyTuple_GET_ITEM(r, 2), a->peak_set, a->at, ntypes) < 0 ||
            store_list(PyTuple_GET_ITEM(r, 3), a->bmax_set, a->bmax, ntypes) < 0 ||
            store_list(PyTuple_GET_ITEM(r, 4), a->bar_set, a->bpk, NBARS) < 0 ||
            store_list(PyTuple_GET_ITEM(r, 5), a->bar_set, a->bat, NBARS) < 0)
            return -1;
    }
    for (int i = 0; i < npid; i++) {
        Acc *q = &pids[i];
        PyObject *r = q->row;
        if (store_list(PyTuple_GET_ITEM(r, 0), q->cur_set, q->cur, ntypes) < 0 ||
            store_list(PyTuple_GET_ITEM(r, 1), q->peak_set, q->peak, ntypes) < 0 ||
            store_list(PyTuple_GET_ITEM(r, 2), q->peak_set, q->at, ntypes) < 0)
            return -1;
    }
    for (int i = 0; i < nrose; i++) {
        PyObject *key = Py_BuildValue("(Oi)", devs[rose_dev[i]].key, (int)rose_t[i]);
        if (key == NULL || PySet_Add(rose, key) < 0) {
            Py_XDECREF(key);
            return -1;
        }
        Py_DECREF(key);
    }
    /* ---- each buffer's new state for the bank maps; the batch's last allocation size per pool goes into
     * last_alloc once, in the order the pools first allocated (the state a store per allocation leaves) */
    PyObject *la_val[256 * 8];
    unsigned short la_order[256 * 8];
    int nla = 0;
    memset(la_val, 0, sizeof la_val);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *ev = items[i];
        PyObject *k = *(PyObject **)((char *)ev + slot_off[S_KIND]);
        long long size = 0, t = 0, dv = 0, bidv = 0;
        int neg = k == k_free || k == k_cleanup;
        if (k != k_alloc && !neg) continue;
        PyObject *so = *(PyObject **)((char *)ev + slot_off[S_SIZE]);
        fits(so, &size); /* all checked above */
        if (neg) size = -size;
        fits(*(PyObject **)((char *)ev + slot_off[S_BT]), &t);
        if (!(0 <= t && t < ntypes)) continue;
        PyObject *d = *(PyObject **)((char *)ev + slot_off[S_DEV]), *bid = *(PyObject **)((char *)ev + slot_off[S_BID]);
        fits(d, &dv);
        int bpos = PyObject_RichCompareBool(bid, zero, Py_GT);
        if (bpos < 0) goto fail;
        if (!bpos || dv < 0 || dv >= 256) continue;
        int positive = size > 0;
        if (mapped_mask & (1u << t)) {
            int small_key = PyLong_CheckExact(bid) && fits(bid, &bidv) && bidv < (1LL << 54);
            /* a Pending holding C integers takes the key and value as they are: no int objects */
            Pending *pc = Py_TYPE(pend) == &PendingType && ((Pending *)pend)->dict == NULL ? (Pending *)pend : NULL;
            PyObject *key = NULL;
            if (pc == NULL || !small_key) {
                key = small_key ? PyLong_FromLongLong(bidv << 8 | dv) : shift_or(bid, 8, (long)dv);
                if (key == NULL) goto fail;
            }
            if (positive) {
                if (key == NULL && size < (1LL << 58)) {
                    if (pending_put(pc, (uint64_t)bidv << 8 | (uint64_t)dv, size << 3 | t) < 0) goto fail;
                } else {
                    PyObject *val;
                    if (key == NULL && (key = PyLong_FromLongLong(bidv << 8 | dv)) == NULL) goto fail;
                    if (size < (1LL << 58)) {
                        val = cached_value(size << 3 | t);
                    } else {
                        PyObject *big = PyLong_FromLongLong(size);
                        val = big ? shift_or(big, 3, (long)t) : NULL;
                        Py_XDECREF(big);
                    }
                    if (pend_set_new(pend, key, val) < 0) goto fail;
                }
                /* the object pass stores the event's size (an ALLOC: never negated) */
                int li = (int)(dv << 3 | t);
                PyObject *lv = neg ? PyLong_FromLongLong(size) : Py_NewRef(so);
                if (lv == NULL) goto fail;
                if (la_val[li] == NULL) la_order[nla++] = (unsigned short)li;
                Py_XSETREF(la_val[li], lv);
                if (t == t_trace || t == t_small) {
                    PyObject *rec = Py_BuildValue("(LOL)", dv, bid, t);
                    if (rec == NULL) goto fail;
                    int bad = PyList_Append(regions, rec);
                    Py_DECREF(rec);
                    if (bad) goto fail;
                }
            } else if (key == NULL) {
                if (pending_put(pc, (uint64_t)bidv << 8 | (uint64_t)dv, -1 - t) < 0) goto fail;
            } else if (pend_set_new(pend, key, PyLong_FromLongLong(-1 - t)) < 0) {
                goto fail;
            }
        } else if (t == t_cb) {
            PyObject *rec = Py_BuildValue("(LOL)", dv, bid, size);
            if (rec == NULL) goto fail;
            int bad = PyList_Append(cbs, rec);
            Py_DECREF(rec);
            if (bad) goto fail;
        }
    }
    for (int i = 0; i < nla; i++) {
        PyObject *v = la_val[la_order[i]];
        la_val[la_order[i]] = NULL;
        if (set_item_new(last_alloc, PyLong_FromLong(la_order[i]), v) < 0) goto fail;
    }
    return 1;
fail:
    for (int i = 0; i < nla; i++) Py_CLEAR(la_val[la_order[i]]);
    return -1;
}

static PyObject *observe_pass(PyObject *self, PyObject *args) {
    PyObject *events, *peaks, *dev_rows, *pid_rows, *pend, *last_alloc, *cbs, *regions;
    if (!PyArg_ParseTuple(args, "OOO!O!OO!O!O!", &events, &peaks, &PyDict_Type, &dev_rows, &PyDict_Type, &pid_rows,
                          &pend, &PyDict_Type, &last_alloc, &PyList_Type, &cbs, &PyList_Type, &regions))
        return NULL;
    if (!PyDict_Check(pend) && Py_TYPE(pend) != &PendingType) {
        PyErr_SetString(PyExc_TypeError, "pend must be a dict or a Pending");
        return NULL;
    }
    if (event_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "tt_memtop._native.insight: setup() was not called");
        return NULL;
    }
    PyObject *mask_obj = PyObject_GetAttrString(peaks, "bar_mask");
    if (mask_obj == NULL) return NULL;
    long bar_mask = PyLong_AsLong(mask_obj);
    Py_DECREF(mask_obj);
    if (bar_mask == -1 && PyErr_Occurred()) return NULL;
    PyObject *seq = PySequence_Fast(events, "events must be a sequence");
    if (seq == NULL) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (Py_TYPE(items[i]) != event_type) { /* not all Events: nothing done, the caller takes the pure pass */
            Py_DECREF(seq);
            Py_RETURN_FALSE;
        }
    }
    PyObject *rose = PyObject_GetAttrString(peaks, "rose");
    if (rose == NULL) {
        Py_DECREF(seq);
        return NULL;
    }
    int r = use_fast ? observe_fast(items, n, peaks, bar_mask, rose, dev_rows, pid_rows, pend, last_alloc, cbs, regions)
                     : 0;
    if (r == 0)
        r = observe_objects(items, n, peaks, bar_mask, rose, dev_rows, pid_rows, pend, last_alloc, cbs, regions);
    Py_DECREF(seq);
    Py_DECREF(rose);
    if (r < 0) return NULL;
    Py_RETURN_TRUE;
}

/* set_fast(flag): take the C-integer path when it applies (the default), or always the object pass (tests) */
static PyObject *set_fast(PyObject *self, PyObject *arg) {
    int v = PyObject_IsTrue(arg);
    if (v < 0) return NULL;
    use_fast = v;
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------ the end of a batch (Insight.observe) */
static PyObject *s_bars_attr = NULL, *s_bars_at_attr = NULL, *s_rose = NULL, *s_mask = NULL;

static PyObject *list_item(PyObject *lst, Py_ssize_t i) { /* borrowed, NULL (error set) when out of range */
    if (!PyList_Check(lst) || i < 0 || i >= PyList_GET_SIZE(lst)) {
        PyErr_SetString(PyExc_TypeError, "peak counters must be lists of one int per buffer type");
        return NULL;
    }
    return PyList_GET_ITEM(lst, i);
}

/* PeakTracker.raise_bars(key, cur, ts) */
static int raise_bars(PyObject *peaks, PyObject *bars, PyObject *bars_at, long bar_mask, PyObject *key, PyObject *cur,
                      PyObject *ts) {
    PyObject *pk = PyDict_GetItemWithError(bars, key), *at;
    if (pk == NULL) {
        if (PyErr_Occurred()) return -1;
        PyObject *got = PyObject_CallMethodObjArgs(peaks, s_bars, key, NULL); /* made at the current sums */
        if (got == NULL) return -1;
        Py_DECREF(got);
        pk = PyDict_GetItemWithError(bars, key);
        if (pk == NULL) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_KeyError, "PeakTracker._bars made no entry");
            return -1;
        }
    }
    at = PyDict_GetItemWithError(bars_at, key);
    if (at == NULL) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_KeyError, "no bar times");
        return -1;
    }
    Py_INCREF(pk);
    Py_INCREF(at);
    int rc = -1;
    for (int b = 0; b < NBARS; b++) {
        PyObject *sum = Py_NewRef(zero);
        for (long u = 0; u < ntypes && u < 31; u++) {
            if (!((bar_types[b] >> u) & 1) || !((bar_mask >> u) & 1)) continue;
            PyObject *x = list_item(cur, u), *ns = x ? PyNumber_Add(sum, x) : NULL;
            Py_DECREF(sum);
            if (ns == NULL) goto out;
            sum = ns;
        }
        PyObject *old = list_item(pk, b);
        int gt = old ? PyObject_RichCompareBool(sum, old, Py_GT) : -1;
        if (gt > 0 && (list_item(at, b) == NULL || list_set(pk, b, sum) < 0 || list_set(at, b, ts) < 0)) gt = -1;
        Py_DECREF(sum);
        if (gt < 0) goto out;
    }
    rc = 0;
out:
    Py_DECREF(pk);
    Py_DECREF(at);
    return rc;
}

/* end_pass(dev_rows, pid_rows, peaks, ts_end, recorded, record, ts): Insight._end_pass, in C */
static PyObject *end_pass(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 7 || !PyDict_Check(args[0]) || !PyDict_Check(args[1]) || !PyDict_Check(args[4])) {
        PyErr_SetString(PyExc_TypeError, "end_pass(dev_rows, pid_rows, peaks, ts_end, recorded, record, ts)");
        return NULL;
    }
    PyObject *dev_rows = args[0], *pid_rows = args[1], *peaks = args[2], *ts_end = args[3], *recorded = args[4];
    PyObject *record = args[5], *ts = args[6];
    PyObject *rose = PyObject_GetAttr(peaks, s_rose), *bars = PyObject_GetAttr(peaks, s_bars_attr);
    PyObject *bars_at = PyObject_GetAttr(peaks, s_bars_at_attr), *mask_obj = PyObject_GetAttr(peaks, s_mask);
    PyObject *out = NULL, *rows[2] = {dev_rows, pid_rows};
    long bar_mask = mask_obj ? PyLong_AsLong(mask_obj) : -1;
    if (rose == NULL || bars == NULL || bars_at == NULL || (bar_mask == -1 && PyErr_Occurred())) goto done;
    if (!PyDict_Check(bars) || !PyDict_Check(bars_at)) {
        PyErr_SetString(PyExc_TypeError, "PeakTracker.bars must be dicts");
        goto done;
    }
    long cbk[2] = {t_cb, t_cb + 1}; /* CB, KERNEL */
    for (int is_pid = 0; is_pid < 2; is_pid++) {
        Py_ssize_t pos = 0;
        PyObject *key, *r;
        while (PyDict_Next(rows[is_pid], &pos, &key, &r)) {
            if (!PyTuple_Check(r) || PyTuple_GET_SIZE(r) < (is_pid ? 3 : 6)) {
                PyErr_SetString(PyExc_TypeError, "bad peak row");
                goto done;
            }
            PyObject *cur = PyTuple_GET_ITEM(r, 0), *peak = PyTuple_GET_ITEM(r, 1), *at = PyTuple_GET_ITEM(r, 2);
            for (int j = 0; j < 2; j++) {
                long t = cbk[j];
                PyObject *c = list_item(cur, t), *p = c ? list_item(peak, t) : NULL;
                if (p == NULL || list_item(at, t) == NULL) goto done;
                int gt = PyObject_RichCompareBool(c, p, Py_GT);
                if (gt < 0) goto done;
                if (!gt) continue;
                Py_INCREF(c); /* held: the stores below replace list items */
                int bad = list_set(peak, t, c) < 0 || list_set(at, t, ts_end) < 0;
                if (!bad && !is_pid) {
                    PyObject *k = Py_BuildValue("(Ol)", key, t);
                    bad = k == NULL || PySet_Add(rose, k) < 0;
                    Py_XDECREF(k);
                    PyObject *bmax = PyTuple_GET_ITEM(r, 3), *b = bad ? NULL : list_item(bmax, t);
                    if (b == NULL) bad = 1;
                    else {
                        int bg = PyObject_RichCompareBool(b, c, Py_GE); /* max(bmax[t], cur[t]): the first if equal */
                        bad = bg < 0 || (!bg && list_set(bmax, t, c) < 0);
                    }
                }
                Py_DECREF(c);
                if (bad) goto done;
            }
            if (!is_pid && raise_bars(peaks, bars, bars_at, bar_mask, key, cur, ts_end) < 0) goto done;
        }
    }
    /* the usage history: one point per series that changed in the batch (its max within it, its last value) */
    Py_ssize_t pos = 0;
    PyObject *d, *r;
    while (PyDict_Next(dev_rows, &pos, &d, &r)) {
        PyObject *cur = PyTuple_GET_ITEM(r, 0), *bmax = PyTuple_GET_ITEM(r, 3);
        PyObject *last = PyDict_GetItemWithError(recorded, d);
        if (last == NULL) {
            if (PyErr_Occurred()) goto done;
            PyObject *m1 = PyLong_FromLong(-1);
            last = m1 ? PyList_New(ntypes) : NULL;
            if (last == NULL) {
                Py_XDECREF(m1);
                goto done;
            }
            for (long t = 0; t < ntypes; t++) PyList_SET_ITEM(last, t, Py_NewRef(m1));
            Py_DECREF(m1);
            int bad = PyDict_SetItem(recorded, d, last);
            Py_DECREF(last);
            if (bad) goto done;
        }
        Py_INCREF(last);
        for (long t = 0; t < ntypes; t++) {
            PyObject *v = list_item(cur, t), *l = v ? list_item(last, t) : NULL, *b = l ? list_item(bmax, t) : NULL;
            int ne = b ? PyObject_RichCompareBool(v, l, Py_NE) : -1;
            int gt = ne == 0 ? PyObject_RichCompareBool(b, v, Py_GT) : 0;
            if (ne < 0 || gt < 0) {
                Py_DECREF(last);
                goto done;
            }
            if (!ne && !gt) continue;
            Py_INCREF(v);
            Py_INCREF(b);
            int bg = PyObject_RichCompareBool(b, v, Py_GT); /* max(bmax[t], v): v if equal */
            PyObject *key = bg < 0 || list_set(last, t, v) < 0 ? NULL : Py_BuildValue("(Ol)", d, t);
            PyObject *res = key ? PyObject_CallFunctionObjArgs(record, key, ts, bg > 0 ? b : v, v, NULL) : NULL;
            Py_XDECREF(key);
            Py_DECREF(v);
            Py_DECREF(b);
            if (res == NULL) {
                Py_DECREF(last);
                goto done;
            }
            Py_DECREF(res);
        }
        Py_DECREF(last);
    }
    out = Py_NewRef(Py_None);
done:
    Py_XDECREF(rose);
    Py_XDECREF(bars);
    Py_XDECREF(bars_at);
    Py_XDECREF(mask_obj);
    return out;
}

static PyMethodDef methods[] = {
    {"setup", setup, METH_VARARGS, "setup(Event, alloc, free, cleanup, ntypes, cb, trace, l1_small, mapped, bars)"},
    {"observe_pass", observe_pass, METH_VARARGS,
     "observe_pass(events, peaks, dev_rows, pid_rows, pend, last_alloc, cbs, regions): Insight's per-event pass"},
    {"end_pass", (PyCFunction)(void (*)(void))end_pass, METH_FASTCALL,
     "end_pass(dev_rows, pid_rows, peaks, ts_end, recorded, record, ts): the end of Insight.observe's batch"},
    {"set_fast", set_fast, METH_O, "set_fast(flag): the C-integer path when it applies (default True), for tests"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "insight", "Insight's per-event pass.", -1, methods};

PyMODINIT_FUNC PyInit_insight(void) {
    zero = PyLong_FromLong(0);
    s_dev = PyUnicode_InternFromString("_dev");
    s_pid = PyUnicode_InternFromString("_pid");
    s_bars = PyUnicode_InternFromString("_bars");
    s_bars_attr = PyUnicode_InternFromString("bars");
    s_bars_at_attr = PyUnicode_InternFromString("bars_at");
    s_rose = PyUnicode_InternFromString("rose");
    s_mask = PyUnicode_InternFromString("bar_mask");
    if (zero == NULL || s_dev == NULL || s_pid == NULL || s_bars == NULL || s_bars_attr == NULL ||
        s_bars_at_attr == NULL || s_rose == NULL || s_mask == NULL)
        return NULL;
    if (PyType_Ready(&PendingType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    Py_INCREF(&PendingType);
    if (PyModule_AddObject(m, "Pending", (PyObject *)&PendingType) < 0) {
        Py_DECREF(&PendingType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
