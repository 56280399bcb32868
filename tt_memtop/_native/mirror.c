/* A monitor's registry mirror, a batch at a time: Registry.apply_batch (tt_memtop/core/registry.py), in C.
 *
 * A monitor replays every event of its server into a Registry (apply_event): in Python ~1.5 us an event,
 * most of it the interpreter around a few table calls and the per-device / per-PID accounting. This is
 * the compiled twin of Registry._apply_one over a batch: the same calls on the same objects in the same
 * order — the registry's table through its own methods (find, row, add, remove, set_refs: compiled or
 * pure, whichever the registry holds), its names dict, its per-space counts list, its per-device
 * _DeviceUsage objects (through their slots) — and the same sequence-gap count.
 *
 * An event is taken here when it is an Event whose kind is an EventKind member and whose fields are plain
 * ints (and strs for the names); any other goes to Registry._apply_one, the reference, with the
 * registry's counters brought up to date first.
 *
 * When the registry holds the compiled Table, its operations are called through table.c's C API (no
 * method call, no row tuple). The batch's changes of the per-device totals and live counts, of the
 * per-space counts and of each (device, pid) list (while it keeps a live entry: the one that reaches
 * 0 is deleted, as objects) are held as C integers and written before the reference runs and at the
 * end: the state the per-event stores leave, with ints made per device and not per event.
 *
 *   setup(Event, DeviceUsage, kinds)   once, from registry.py; kinds: ALLOC REF_INC REF_DEC FREE FREE_UNKNOWN CLEANUP
 *   apply_batch(registry, events) -> the sequence gaps seen
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <structmember.h>

#include "table_api.h"

#define NTYPES 7
#define CB 5
#define KERNEL 6
#define U32 0xFFFFFFFFLL

enum { E_SEQ, E_TS, E_KIND, E_PID, E_DEV, E_BT, E_BID, E_SIZE, E_REFS, E_NAME, E_TRACE, E_N };
static const char *EV_NAMES[E_N] = {"seq",       "ts_ns",  "kind", "pid",       "device",     "buffer_type",
                                    "buffer_id", "size",   "ref_count", "name", "stack_trace"};
enum { U_TOTALS, U_COUNT, U_BY_PID, U_N };
static const char *U_NAMES[U_N] = {"totals", "count", "by_pid"};
enum { K_ALLOC, K_REF_INC, K_REF_DEC, K_FREE, K_FREE_UNKNOWN, K_CLEANUP, K_N };

static Py_ssize_t ev_off[E_N], u_off[U_N];
static PyTypeObject *event_type, *usage_type;
static PyObject *kinds[K_N];
static PyObject *small[3];
static PyObject *s_t, *s_strings, *s_counts, *s_usage, *s_seq, *s_unknown, *s_unstorable, *s_apply_one, *s_find,
    *s_row, *s_add, *s_remove, *s_set_refs;
static int ready = 0;

static const TableApi *table_api = NULL; /* table_api.h; NULL: every table through its methods */

#define SLOT(o, off) (*(PyObject **)((char *)(o) + (off)))

static int offsets(PyTypeObject *type, const char **names, int n, Py_ssize_t *out) {
    for (int i = 0; i < n; i++) {
        PyObject *d = PyObject_GetAttrString((PyObject *)type, names[i]);
        if (d == NULL) return -1;
        if (Py_TYPE(d) != &PyMemberDescr_Type || ((PyMemberDescrObject *)d)->d_member->type != T_OBJECT_EX ||
            (((PyMemberDescrObject *)d)->d_member->flags & READONLY)) {
            Py_DECREF(d);
            PyErr_Format(PyExc_TypeError, "%s.%s is not a writable slot", type->tp_name, names[i]);
            return -1;
        }
        out[i] = ((PyMemberDescrObject *)d)->d_member->offset;
        Py_DECREF(d);
    }
    return 0;
}

static PyObject *setup(PyObject *self, PyObject *args) {
    PyObject *et, *ut, *ks;
    if (!PyArg_ParseTuple(args, "O!O!O", &PyType_Type, &et, &PyType_Type, &ut, &ks)) return NULL;
    if (offsets((PyTypeObject *)et, EV_NAMES, E_N, ev_off) < 0 || offsets((PyTypeObject *)ut, U_NAMES, U_N, u_off) < 0)
        return NULL;
    PyObject *seq = PySequence_Fast(ks, "kinds must be a sequence");
    if (seq == NULL) return NULL;
    if (PySequence_Fast_GET_SIZE(seq) != K_N) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_ValueError, "kinds: ALLOC REF_INC REF_DEC FREE FREE_UNKNOWN CLEANUP");
        return NULL;
    }
    for (int i = 0; i < K_N; i++) Py_XSETREF(kinds[i], Py_NewRef(PySequence_Fast_GET_ITEM(seq, i)));
    Py_DECREF(seq);
    Py_XSETREF(event_type, (PyTypeObject *)Py_NewRef(et));
    Py_XSETREF(usage_type, (PyTypeObject *)Py_NewRef(ut));
    table_api = load_table_api();
    ready = 1;
    Py_RETURN_NONE;
}

#define UCACHE 16 /* devices whose usage account() keeps at hand */

typedef struct {
    PyObject *reg, *strings, *counts, *usage;
    PyObject *table;                                /* the registry's table, when it is the compiled Table */
    struct {                                        /* account()'s devices: usage, last (device, pid) list */
        PyObject *key, *u, *pid, *pt;
        int deferred;            /* totals / count changes held here until flush(): plain lists and ints */
        long long dt[NTYPES], dc; /* ... the totals' and the count's changes not yet written */
        int pt_ok;               /* pt's changes may be held too: a plain list, its count pt_n known */
        long long pt_n, pt_dt[NTYPES], pt_dn; /* pt's live entries as of now; its changes not yet written */
    } dev[UCACHE];
    int ndev, next_dev;
    long long dcounts[3]; /* changes of registry._counts not yet written */
    PyObject *find, *row, *add, *remove, *set_refs; /* the table's bound methods */
    PyObject *seq;                                  /* registry.seq as we know it (new ref) */
    long long unknown, unstorable;                  /* increments not yet written back */
    int seq_dirty;
} Ctx;

static int space_of(PyObject *bt) {
    int o = 0;
    long long v = PyLong_AsLongLongAndOverflow(bt, &o);
    if (o) return 0;
    return v == CB ? 1 : v == KERNEL ? 2 : 0;
}

static int add_to(PyObject *obj, PyObject *name, long long delta) {
    if (!delta) return 0;
    PyObject *v = PyObject_GetAttr(obj, name);
    if (v == NULL) return -1;
    PyObject *d = PyLong_FromLongLong(delta);
    PyObject *nv = d ? PyNumber_Add(v, d) : NULL;
    Py_DECREF(v);
    Py_XDECREF(d);
    if (nv == NULL) return -1;
    int r = PyObject_SetAttr(obj, name, nv);
    Py_DECREF(nv);
    return r;
}

static int item_add(PyObject *list, Py_ssize_t i, PyObject *delta);

/* add a C integer to list[i] */
static int item_add_ll(PyObject *list, Py_ssize_t i, long long d) {
    if (!d) return 0;
    PyObject *x = PyLong_FromLongLong(d);
    if (x == NULL) return -1;
    int r = item_add(list, i, x);
    Py_DECREF(x);
    return r;
}

/* the held changes of a device entry's (device, pid) list into it */
static int flush_pt(Ctx *c, int di) {
    if (c->dev[di].pt == NULL || !c->dev[di].pt_ok) return 0;
    for (int t = 0; t < NTYPES; t++) {
        if (item_add_ll(c->dev[di].pt, t, c->dev[di].pt_dt[t]) < 0) return -1;
        c->dev[di].pt_dt[t] = 0;
    }
    if (item_add_ll(c->dev[di].pt, NTYPES, c->dev[di].pt_dn) < 0) return -1;
    c->dev[di].pt_dn = 0;
    return 0;
}

/* one device's held totals / count changes into its _DeviceUsage (and its (device, pid) list's) */
static int flush_dev(Ctx *c, int di) {
    if (flush_pt(c, di) < 0) return -1;
    if (!c->dev[di].deferred) return 0;
    PyObject *u = c->dev[di].u, *totals = SLOT(u, u_off[U_TOTALS]);
    for (int t = 0; t < NTYPES; t++) {
        if (item_add_ll(totals, t, c->dev[di].dt[t]) < 0) return -1;
        c->dev[di].dt[t] = 0;
    }
    if (c->dev[di].dc) {
        PyObject *d = PyLong_FromLongLong(c->dev[di].dc), *cnt = SLOT(u, u_off[U_COUNT]);
        PyObject *nc = d && cnt ? PyNumber_Add(cnt, d) : NULL;
        Py_XDECREF(d);
        if (nc == NULL) return -1;
        PyObject *old = SLOT(u, u_off[U_COUNT]);
        SLOT(u, u_off[U_COUNT]) = nc;
        Py_DECREF(old);
        c->dev[di].dc = 0;
    }
    return 0;
}

/* counters into the registry (before Python code reads them, and at the end) */
static int flush(Ctx *c) {
    for (int i = 0; i < 3; i++) {
        if (item_add_ll(c->counts, i, c->dcounts[i]) < 0) return -1;
        c->dcounts[i] = 0;
    }
    for (int i = 0; i < c->ndev; i++)
        if (flush_dev(c, i) < 0) return -1;
    if (c->seq_dirty && PyObject_SetAttr(c->reg, s_seq, c->seq) < 0) return -1;
    c->seq_dirty = 0;
    if (add_to(c->reg, s_unknown, c->unknown) < 0) return -1;
    c->unknown = 0;
    if (add_to(c->reg, s_unstorable, c->unstorable) < 0) return -1;
    c->unstorable = 0;
    return 0;
}

/* seq[i] += delta for a list (the counts list, a usage list) */
static int item_add(PyObject *list, Py_ssize_t i, PyObject *delta) {
    if (PyList_CheckExact(list) && i >= 0 && i < PyList_GET_SIZE(list) && PyLong_CheckExact(delta) &&
        PyLong_CheckExact(PyList_GET_ITEM(list, i))) { /* int + int: no index adjustment, no lookup */
        PyObject *v = PyList_GET_ITEM(list, i);
        PyObject *nv = PyNumber_Add(v, delta);
        if (nv == NULL) return -1;
        PyList_SET_ITEM(list, i, nv);
        Py_DECREF(v);
        return 0;
    }
    PyObject *v = PySequence_GetItem(list, i);
    if (v == NULL) return -1;
    PyObject *nv = PyNumber_Add(v, delta);
    Py_DECREF(v);
    if (nv == NULL) return -1;
    int r = PySequence_SetItem(list, i, nv);
    Py_DECREF(nv);
    return r;
}

/* seq[i] -= v for a list (a usage list): the reference's `+= -size` for ints, without the negated int */
static int item_sub(PyObject *list, Py_ssize_t i, PyObject *v) {
    if (PyList_CheckExact(list) && i >= 0 && i < PyList_GET_SIZE(list) && PyLong_CheckExact(v) &&
        PyLong_CheckExact(PyList_GET_ITEM(list, i))) {
        PyObject *old = PyList_GET_ITEM(list, i);
        PyObject *nv = PyNumber_Subtract(old, v);
        if (nv == NULL) return -1;
        PyList_SET_ITEM(list, i, nv);
        Py_DECREF(old);
        return 0;
    }
    PyObject *neg = PyNumber_Negative(v);
    if (neg == NULL) return -1;
    int r = item_add(list, i, neg);
    Py_DECREF(neg);
    return r;
}

static void forget_usage(Ctx *c) {
    for (int i = 0; i < c->ndev; i++) {
        Py_CLEAR(c->dev[i].key);
        Py_CLEAR(c->dev[i].u);
        Py_CLEAR(c->dev[i].pid);
        Py_CLEAR(c->dev[i].pt);
    }
    c->ndev = c->next_dev = 0;
}

/* Registry._account. Each device's _DeviceUsage and its last (device, pid) list are kept, by the identity
 * of the key objects (a batch is mostly one process on a few devices): a dict look-up only for a new one. */
static int account(Ctx *c, PyObject *device, PyObject *t, PyObject *size, PyObject *pid, int sign) {
    int di = 0;
    while (di < c->ndev && c->dev[di].key != device) di++;
    if (di == c->ndev) {
        PyObject *u = PyDict_GetItemWithError(c->usage, device);
        if (u == NULL) {
            if (PyErr_Occurred()) return -1;
            u = PyObject_CallNoArgs((PyObject *)usage_type);
            if (u == NULL) return -1;
            int r = PyDict_SetItem(c->usage, device, u);
            Py_DECREF(u);
            if (r < 0) return -1;
        }
        if (Py_TYPE(u) != usage_type) {
            PyErr_SetString(PyExc_TypeError, "registry usage is not a _DeviceUsage");
            return -1;
        }
        /* one entry per device: an equal device int of another identity takes over its entry */
        for (di = 0; di < c->ndev && c->dev[di].u != u; di++) {
        }
        if (di < c->ndev) {
            Py_XSETREF(c->dev[di].key, Py_NewRef(device));
            goto have;
        }
        if (c->ndev < UCACHE) {
            di = c->ndev++;
        } else { /* round robin */
            di = c->next_dev;
            c->next_dev = (c->next_dev + 1) % UCACHE;
            if (flush_dev(c, di) < 0) return -1;
            Py_CLEAR(c->dev[di].key);
            Py_CLEAR(c->dev[di].u);
            Py_CLEAR(c->dev[di].pid);
            Py_CLEAR(c->dev[di].pt);
        }
        c->dev[di].u = Py_NewRef(u);
        c->dev[di].key = Py_NewRef(device);
        PyObject *tl = SLOT(u, u_off[U_TOTALS]), *cn = SLOT(u, u_off[U_COUNT]);
        c->dev[di].deferred = tl != NULL && PyList_CheckExact(tl) && PyList_GET_SIZE(tl) == NTYPES && cn != NULL &&
                              PyLong_CheckExact(cn);
        memset(c->dev[di].dt, 0, sizeof c->dev[di].dt);
        c->dev[di].dc = 0;
    }
have:;
    PyObject *u = c->dev[di].u;
    Py_ssize_t ti = PyNumber_AsSsize_t(t, PyExc_IndexError);
    if (ti == -1 && PyErr_Occurred()) return -1;
    PyObject *sg = small[sign < 0 ? 0 : 1];
    int held = 0; /* the totals' and the count's change held in C (written by flush()) */
    long long sz = 0;
    int small_size = 0; /* size as a C integer well inside 64 bits */
    if (ti >= 0 && ti < NTYPES && PyLong_CheckExact(size)) {
        int ovf = 0;
        sz = PyLong_AsLongLongAndOverflow(size, &ovf);
        if (sz == -1 && PyErr_Occurred()) return -1;
        small_size = !ovf && sz >= -(1LL << 62) && sz <= (1LL << 62);
    }
    if (c->dev[di].deferred && small_size) {
        long long acc;
        if (
            !__builtin_add_overflow(c->dev[di].dt[ti], sign < 0 ? -sz : sz, &acc) && acc >= -(1LL << 62) &&
            acc <= (1LL << 62)) {
            c->dev[di].dt[ti] = acc;
            if (ti != CB && ti != KERNEL) c->dev[di].dc += sign < 0 ? -1 : 1;
            held = 1;
        } else if (flush_dev(c, di) < 0) { /* then this change as objects, after the held ones */
            return -1;
        }
    }
    if (!held) {
        PyObject *totals = SLOT(u, u_off[U_TOTALS]);
        if (totals == NULL || (sign < 0 ? item_sub(totals, ti, size) : item_add(totals, ti, size)) < 0) return -1;
    }
    if (sign < 0 && (sg = PyLong_FromLong(-1)) == NULL) return -1; /* a small int: no allocation */
    int rc = -1;
    if (!held && ti != CB && ti != KERNEL) {
        PyObject *cnt = SLOT(u, u_off[U_COUNT]);
        PyObject *nc = cnt ? PyNumber_Add(cnt, sg) : NULL;
        if (nc == NULL) goto done;
        PyObject *old = SLOT(u, u_off[U_COUNT]);
        SLOT(u, u_off[U_COUNT]) = nc;
        Py_DECREF(old);
    }
    PyObject *by_pid = SLOT(u, u_off[U_BY_PID]);
    if (by_pid == NULL || !PyDict_Check(by_pid)) {
        PyErr_SetString(PyExc_TypeError, "by_pid is not a dict");
        goto done;
    }
    PyObject *pt = c->dev[di].pt;
    if (pt == NULL || pid != c->dev[di].pid) {
        if (flush_pt(c, di) < 0) goto done; /* the list it held gets what is held for it */
        pt = PyDict_GetItemWithError(by_pid, pid);
        if (pt == NULL) {
            if (PyErr_Occurred()) goto done;
            pt = PyList_New(NTYPES + 1);
            if (pt == NULL) goto done;
            for (int i = 0; i <= NTYPES; i++) PyList_SET_ITEM(pt, i, Py_NewRef(small[0]));
            int r = PyDict_SetItem(by_pid, pid, pt);
            Py_DECREF(pt);
            if (r < 0) goto done;
        }
        Py_XSETREF(c->dev[di].pt, Py_NewRef(pt));
        Py_XSETREF(c->dev[di].pid, Py_NewRef(pid));
        int ovf = 0;
        PyObject *n0 = PyList_CheckExact(pt) && PyList_GET_SIZE(pt) == NTYPES + 1 ? PyList_GET_ITEM(pt, NTYPES) : NULL;
        c->dev[di].pt_n = n0 != NULL && PyLong_CheckExact(n0) ? PyLong_AsLongLongAndOverflow(n0, &ovf) : 0;
        if (c->dev[di].pt_n == -1 && PyErr_Occurred()) goto done;
        c->dev[di].pt_ok = n0 != NULL && PyLong_CheckExact(n0) && !ovf && c->dev[di].pt_n > -(1LL << 62) &&
                           c->dev[di].pt_n < (1LL << 62);
        memset(c->dev[di].pt_dt, 0, sizeof c->dev[di].pt_dt);
        c->dev[di].pt_dn = 0;
    }
    /* held while the entry keeps a live entry (it is deleted at 0: that change is made as objects) */
    if (c->dev[di].pt_ok && small_size && c->dev[di].pt_n + sign >= 1) {
        long long acc;
        if (!__builtin_add_overflow(c->dev[di].pt_dt[ti], sign < 0 ? -sz : sz, &acc) && acc >= -(1LL << 62) &&
            acc <= (1LL << 62)) {
            c->dev[di].pt_dt[ti] = acc;
            c->dev[di].pt_dn += sign < 0 ? -1 : 1;
            c->dev[di].pt_n += sign < 0 ? -1 : 1;
            rc = 0;
            goto done;
        }
    }
    if (flush_pt(c, di) < 0) goto done;
    if ((sign < 0 ? item_sub(pt, ti, size) : item_add(pt, ti, size)) < 0 || item_add(pt, NTYPES, sg) < 0) goto done;
    c->dev[di].pt_n += sign < 0 ? -1 : 1;
    PyObject *n = PySequence_GetItem(pt, NTYPES);
    if (n == NULL) goto done;
    int nz = PyObject_IsTrue(n);
    Py_DECREF(n);
    if (nz < 0) goto done;
    if (!nz) {
        /* the entry goes: so does what we keep of it (an equal device int of another identity may hold it too) */
        for (int j = 0; j < c->ndev; j++) {
            if (c->dev[j].pt == pt) {
                Py_CLEAR(c->dev[j].pid);
                Py_CLEAR(c->dev[j].pt);
            }
        }
        if (PyDict_DelItem(by_pid, pid) < 0) goto done;
    }
    rc = 0;
done:
    if (sign < 0) Py_DECREF(sg);
    return rc;
}

static PyObject *call(PyObject *f, PyObject *const *args, size_t n) { return PyObject_Vectorcall(f, args, n, NULL); }

/* table.find(space, dev, bid) -> slot (-1: none), or -2 on error */
static long long find(Ctx *c, int space, PyObject *dev, PyObject *bid, PyObject **slot) {
    PyObject *a[3] = {small[space], dev, bid};
    PyObject *s = call(c->find, a, 3);
    if (s == NULL) return -2;
    long long v = PyLong_AsLongLong(s);
    if (v == -1 && PyErr_Occurred()) {
        Py_DECREF(s);
        return -2;
    }
    *slot = s;
    return v;
}

/* Registry._drop(slot, row) */
static int drop(Ctx *c, PyObject *slot, PyObject *row) {
    if (!PyTuple_Check(row) || PyTuple_GET_SIZE(row) != 9) {
        PyErr_SetString(PyExc_TypeError, "a table row is not a 9-tuple");
        return -1;
    }
    PyObject *dev = PyTuple_GET_ITEM(row, 0), *bid = PyTuple_GET_ITEM(row, 1), *bt = PyTuple_GET_ITEM(row, 2);
    PyObject *size = PyTuple_GET_ITEM(row, 3), *pid = PyTuple_GET_ITEM(row, 4);
    int space = space_of(bt);
    int has = PyObject_IsTrue(PyTuple_GET_ITEM(row, 8));
    if (has < 0) return -1;
    if (has) {
        PyObject *k = PyTuple_Pack(3, small[space], dev, bid);
        if (k == NULL) return -1;
        int r = PyDict_DelItem(c->strings, k);
        Py_DECREF(k);
        if (r < 0) {
            if (!PyErr_ExceptionMatches(PyExc_KeyError)) return -1;
            PyErr_Clear();
        }
    }
    PyObject *x = call(c->remove, &slot, 1);
    if (x == NULL) return -1;
    Py_DECREF(x);
    PyObject *m1 = PyLong_FromLong(-1);
    if (m1 == NULL) return -1;
    int r = item_add(c->counts, space, m1);
    Py_DECREF(m1);
    if (r < 0) return -1;
    return account(c, dev, bt, size, pid, -1);
}

static int drop_slot(Ctx *c, PyObject *slot) {
    PyObject *row = call(c->row, &slot, 1);
    if (row == NULL) return -1;
    int r = drop(c, slot, row);
    Py_DECREF(row);
    return r;
}

/* Registry._put(dev, bid, btype, size, pid, 1, ts, seq, name, trace) */
static int put(Ctx *c, PyObject *ev) {
    PyObject *dev = SLOT(ev, ev_off[E_DEV]), *bid = SLOT(ev, ev_off[E_BID]), *bt = SLOT(ev, ev_off[E_BT]);
    PyObject *size = SLOT(ev, ev_off[E_SIZE]), *pid = SLOT(ev, ev_off[E_PID]);
    PyObject *name = SLOT(ev, ev_off[E_NAME]), *trace = SLOT(ev, ev_off[E_TRACE]);
    int space = space_of(bt);
    PyObject *slot = NULL;
    long long old = find(c, space, dev, bid, &slot);
    if (old == -2) return -1;
    if (old >= 0) {
        int r = drop_slot(c, slot);
        Py_DECREF(slot);
        if (r < 0) return -1;
    } else {
        Py_DECREF(slot);
    }
    int has = PyUnicode_GET_LENGTH(name) > 0 || PyUnicode_GET_LENGTH(trace) > 0;
    PyObject *a[9] = {dev, bid, bt, size, pid, small[1], SLOT(ev, ev_off[E_TS]), SLOT(ev, ev_off[E_SEQ]),
                      has ? Py_True : Py_False};
    PyObject *x = call(c->add, a, 9);
    if (x == NULL) {
        if (PyErr_ExceptionMatches(PyExc_OverflowError) || PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_Clear();
            c->unstorable++;
            return 0;
        }
        return -1;
    }
    Py_DECREF(x);
    if (has) {
        PyObject *k = PyTuple_Pack(3, small[space], dev, bid);
        PyObject *v = k ? PyTuple_Pack(2, name, trace) : NULL;
        int r = v ? PyDict_SetItem(c->strings, k, v) : -1;
        Py_XDECREF(k);
        Py_XDECREF(v);
        if (r < 0) return -1;
    }
    if (item_add(c->counts, space, small[1]) < 0) return -1;
    return account(c, dev, bt, size, pid, +1);
}

/* ---- the compiled table through its C API (the same steps as put / drop / apply_c above) */
static inline unsigned space_c(uint8_t type) { return type == CB ? 1u : type == KERNEL ? 2u : 0u; }

/* An int that fits [lo, hi] (as a long long): 1, else 0 (no error left set). */
static inline int in_range(PyObject *o, long long lo, long long hi, long long *out) {
    int ovf = 0;
    long long v = PyLong_AsLongLongAndOverflow(o, &ovf);
    if (v == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    if (ovf || v < lo || v > hi) return 0;
    *out = v;
    return 1;
}

static inline int as_u64(PyObject *o, uint64_t *out) {
    unsigned long long v = PyLong_AsUnsignedLongLong(o);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    *out = v;
    return 1;
}

/* The event's key as the table holds it: 1, else 0 (a value no column holds: the method path decides). */
static int fast_key(PyObject *ev, int32_t *dev, uint64_t *bid, uint8_t *bt) {
    long long d, t;
    if (!in_range(SLOT(ev, ev_off[E_DEV]), INT32_MIN, INT32_MAX, &d) ||
        !in_range(SLOT(ev, ev_off[E_BT]), 0, 255, &t) || !as_u64(SLOT(ev, ev_off[E_BID]), bid))
        return 0;
    *dev = (int32_t)d;
    *bt = (uint8_t)t;
    return 1;
}

/* The int object `have` if its value is v, else a new one (the row's values, without an allocation when
 * the event carries the same ones). */
static PyObject *same_or_new_u64(PyObject *have, uint64_t v) {
    uint64_t x;
    if (have != NULL && PyLong_CheckExact(have) && as_u64(have, &x) && x == v) return Py_NewRef(have);
    return PyLong_FromUnsignedLongLong(v);
}

static PyObject *same_or_new_i32(PyObject *have, int32_t v) {
    long long x;
    if (have != NULL && PyLong_CheckExact(have) && in_range(have, INT32_MIN, INT32_MAX, &x) && x == v)
        return Py_NewRef(have);
    return PyLong_FromLong(v);
}

/* Registry._drop(slot, row) of a live slot; `ev`: the FREE / CLEANUP that drops it (NULL: none) */
static int drop_fast(Ctx *c, uint32_t slot, PyObject *ev) {
    ApiRow r;
    if (table_api->get(c->table, slot, &r) < 0) return -1;
    unsigned space = space_c(r.type);
    int rc = -1;
    PyObject *dev = PyLong_FromLong(r.device), *bt = PyLong_FromLong(r.type);
    PyObject *size = same_or_new_u64(ev ? SLOT(ev, ev_off[E_SIZE]) : NULL, r.size);
    PyObject *pid = same_or_new_i32(ev ? SLOT(ev, ev_off[E_PID]) : NULL, r.pid);
    if (dev == NULL || bt == NULL || size == NULL || pid == NULL) goto out;
    if (r.strings) {
        PyObject *bid = PyLong_FromUnsignedLongLong(r.bid);
        PyObject *k = bid ? PyTuple_Pack(3, small[space], dev, bid) : NULL;
        Py_XDECREF(bid);
        if (k == NULL) goto out;
        int d = PyDict_DelItem(c->strings, k);
        Py_DECREF(k);
        if (d < 0) {
            if (!PyErr_ExceptionMatches(PyExc_KeyError)) goto out;
            PyErr_Clear();
        }
    }
    if (table_api->remove(c->table, slot) < 0) goto out;
    c->dcounts[space]--;
    rc = account(c, dev, bt, size, pid, -1);
out:
    Py_XDECREF(dev);
    Py_XDECREF(bt);
    Py_XDECREF(size);
    Py_XDECREF(pid);
    return rc;
}

static int put(Ctx *c, PyObject *ev);

/* Registry._put of an ALLOC, when every field fits its column (else put(), whose add() says why not) */
static int put_fast(Ctx *c, PyObject *ev) {
    ApiRow r;
    long long pid, ts;
    if (!fast_key(ev, &r.device, &r.bid, &r.type) || !as_u64(SLOT(ev, ev_off[E_SIZE]), &r.size) ||
        !in_range(SLOT(ev, ev_off[E_PID]), INT32_MIN, INT32_MAX, &pid) ||
        !in_range(SLOT(ev, ev_off[E_TS]), LLONG_MIN, LLONG_MAX, &ts) || !as_u64(SLOT(ev, ev_off[E_SEQ]), &r.seq))
        return put(c, ev);
    r.pid = (int32_t)pid;
    r.ts = ts;
    r.refs = 1;
    unsigned space = space_c(r.type);
    int64_t old = table_api->find(c->table, space, r.device, r.bid);
    if (old == -2) return -1;
    if (old >= 0 && drop_fast(c, (uint32_t)old, ev) < 0) return -1;
    PyObject *name = SLOT(ev, ev_off[E_NAME]), *trace = SLOT(ev, ev_off[E_TRACE]);
    int has = PyUnicode_GET_LENGTH(name) > 0 || PyUnicode_GET_LENGTH(trace) > 0;
    r.strings = (uint8_t)has;
    if (table_api->add(c->table, &r) < 0) {
        if (PyErr_ExceptionMatches(PyExc_OverflowError) || PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_Clear();
            c->unstorable++;
            return 0;
        }
        return -1;
    }
    PyObject *dev = SLOT(ev, ev_off[E_DEV]), *bid = SLOT(ev, ev_off[E_BID]);
    if (has) {
        PyObject *k = PyTuple_Pack(3, small[space], dev, bid);
        PyObject *v = k ? PyTuple_Pack(2, name, trace) : NULL;
        int e = v ? PyDict_SetItem(c->strings, k, v) : -1;
        Py_XDECREF(k);
        Py_XDECREF(v);
        if (e < 0) return -1;
    }
    c->dcounts[space]++;
    return account(c, dev, SLOT(ev, ev_off[E_BT]), SLOT(ev, ev_off[E_SIZE]), SLOT(ev, ev_off[E_PID]), +1);
}

static int apply_c(Ctx *c, PyObject *ev, int k);

/* apply_c through the C API; 1 = not applicable here (a key no column holds), 0 = done, -1 = error */
static int apply_fast(Ctx *c, PyObject *ev, int k) {
    if (k == K_ALLOC) return put_fast(c, ev);
    if (k != K_FREE && k != K_CLEANUP && k != K_REF_INC && k != K_REF_DEC) return 1;
    int32_t dev;
    uint64_t bid;
    uint8_t bt;
    if (!fast_key(ev, &dev, &bid, &bt)) return 1;
    int64_t s = table_api->find(c->table, space_c(bt), dev, bid);
    if (s == -2) return -1;
    if (s < 0) return 0;
    if (k == K_FREE || k == K_CLEANUP) return drop_fast(c, (uint32_t)s, ev);
    int o = 0;
    long long rc = PyLong_AsLongLongAndOverflow(SLOT(ev, ev_off[E_REFS]), &o);
    if (rc == -1 && PyErr_Occurred()) return -1;
    if (o) rc = o > 0 ? U32 : 0;
    if (rc < 0) rc = 0;
    if (rc > U32) rc = U32;
    return table_api->set_refs(c->table, (uint32_t)s, (uint32_t)rc);
}

static int kind_index(PyObject *kind) {
    for (int i = 0; i < K_N; i++)
        if (kind == kinds[i]) return i;
    return -1;
}

/* Is ``ev`` one this module applies (else the reference does)? */
static int takes(PyObject *ev, int *k) {
    if (Py_TYPE(ev) != event_type) return 0;
    PyObject *kind = SLOT(ev, ev_off[E_KIND]);
    if (kind == NULL) return 0;
    *k = kind_index(kind);
    if (*k < 0 && Py_TYPE(kind) != Py_TYPE(kinds[0])) return 0; /* not an EventKind (an int equal to one?) */
    static const int ints[] = {E_SEQ, E_TS, E_PID, E_DEV, E_BT, E_BID, E_SIZE};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        PyObject *v = SLOT(ev, ev_off[ints[i]]);
        if (v == NULL || !PyLong_CheckExact(v)) return 0;
    }
    if (*k == K_ALLOC) {
        PyObject *n = SLOT(ev, ev_off[E_NAME]), *t = SLOT(ev, ev_off[E_TRACE]);
        if (n == NULL || t == NULL || !PyUnicode_CheckExact(n) || !PyUnicode_CheckExact(t)) return 0;
    }
    if (*k == K_REF_INC || *k == K_REF_DEC) {
        PyObject *r = SLOT(ev, ev_off[E_REFS]);
        if (r == NULL || !PyLong_CheckExact(r)) return 0;
    }
    /* seq as a non-negative C integer (the gap count compares it) */
    int o = 0;
    long long s = PyLong_AsLongLongAndOverflow(SLOT(ev, ev_off[E_SEQ]), &o);
    if (o || s < 0) return 0;
    return 1;
}

static int apply_c(Ctx *c, PyObject *ev, int k) {
    if (k == K_ALLOC) return put(c, ev);
    if (k == K_FREE || k == K_CLEANUP || k == K_REF_INC || k == K_REF_DEC) {
        PyObject *slot = NULL;
        long long s = find(c, space_of(SLOT(ev, ev_off[E_BT])), SLOT(ev, ev_off[E_DEV]), SLOT(ev, ev_off[E_BID]), &slot);
        if (s == -2) return -1;
        int r = 0;
        if (s >= 0) {
            if (k == K_FREE || k == K_CLEANUP) {
                r = drop_slot(c, slot);
            } else {
                int o = 0;
                long long rc = PyLong_AsLongLongAndOverflow(SLOT(ev, ev_off[E_REFS]), &o);
                if (o) rc = o > 0 ? U32 : 0;
                if (rc < 0) rc = 0;
                if (rc > U32) rc = U32;
                PyObject *rco = PyLong_FromLongLong(rc);
                PyObject *a[2] = {slot, rco};
                PyObject *x = rco ? call(c->set_refs, a, 2) : NULL;
                Py_XDECREF(rco);
                if (x == NULL) r = -1;
                Py_XDECREF(x);
            }
        }
        Py_DECREF(slot);
        return r;
    }
    if (k == K_FREE_UNKNOWN) c->unknown++;
    return 0;
}

static PyObject *apply_batch(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "apply_batch(registry, events)");
        return NULL;
    }
    if (!ready) {
        PyErr_SetString(PyExc_RuntimeError, "mirror.setup() was not called");
        return NULL;
    }
    Ctx c;
    memset(&c, 0, sizeof c);
    c.reg = args[0];
    PyObject *evs = PySequence_Fast(args[1], "events must be a sequence"), *t = NULL;
    if (evs == NULL) return NULL;
    long long gaps = 0, last = 0;
    int failed = 1;
    if ((t = PyObject_GetAttr(c.reg, s_t)) == NULL || (c.strings = PyObject_GetAttr(c.reg, s_strings)) == NULL ||
        (c.counts = PyObject_GetAttr(c.reg, s_counts)) == NULL || (c.usage = PyObject_GetAttr(c.reg, s_usage)) == NULL ||
        (c.find = PyObject_GetAttr(t, s_find)) == NULL || (c.row = PyObject_GetAttr(t, s_row)) == NULL ||
        (c.add = PyObject_GetAttr(t, s_add)) == NULL || (c.remove = PyObject_GetAttr(t, s_remove)) == NULL ||
        (c.set_refs = PyObject_GetAttr(t, s_set_refs)) == NULL || (c.seq = PyObject_GetAttr(c.reg, s_seq)) == NULL)
        goto out;
    if (table_api != NULL && Py_TYPE(t) == table_api->type) c.table = t;
    if (!PyDict_CheckExact(c.strings) || !PyDict_CheckExact(c.usage)) {
        PyErr_SetString(PyExc_TypeError, "registry dicts are not dicts");
        goto out;
    }
    int known = 0; /* last holds registry.seq as a C integer */
    Py_ssize_t n = PySequence_Fast_GET_SIZE(evs);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *ev = PySequence_Fast_GET_ITEM(evs, i);
        int k = -1;
        if (!known) {
            int o = 0;
            last = PyLong_CheckExact(c.seq) ? PyLong_AsLongLongAndOverflow(c.seq, &o) : (o = 1, 0);
            if (last == -1 && PyErr_Occurred()) goto out;
            known = !o && last >= 0;
        }
        if (!known || !takes(ev, &k)) {
            if (flush(&c) < 0) goto out;
            forget_usage(&c); /* the reference may change the usage dicts */
            PyObject *a[2] = {c.reg, ev};
            PyObject *g = PyObject_VectorcallMethod(s_apply_one, a, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
            if (g == NULL) goto out;
            long long gv = PyLong_AsLongLong(g);
            Py_DECREF(g);
            if (gv == -1 && PyErr_Occurred()) goto out;
            gaps += gv;
            Py_SETREF(c.seq, PyObject_GetAttr(c.reg, s_seq));
            if (c.seq == NULL) goto out;
            known = 0;
            continue;
        }
        PyObject *seqo = SLOT(ev, ev_off[E_SEQ]);
        long long s = PyLong_AsLongLong(seqo);
        if (s) {
            if (last && s > last + 1) gaps++;
            last = s;
            Py_SETREF(c.seq, Py_NewRef(seqo));
            c.seq_dirty = 1;
        }
        if (k >= 0) { /* else a kind that changes no entry */
            int r = c.table != NULL ? apply_fast(&c, ev, k) : 1;
            if (r < 0 || (r > 0 && apply_c(&c, ev, k) < 0)) goto out;
        }
    }
    failed = 0;
out:;
    PyObject *et = NULL, *evv = NULL, *tb = NULL;
    if (failed) PyErr_Fetch(&et, &evv, &tb);
    if (c.seq != NULL && flush(&c) < 0 && !failed) failed = 1;
    if (et != NULL) PyErr_Restore(et, evv, tb);
    Py_DECREF(evs);
    Py_XDECREF(t);
    Py_XDECREF(c.strings);
    Py_XDECREF(c.counts);
    Py_XDECREF(c.usage);
    Py_XDECREF(c.find);
    Py_XDECREF(c.row);
    Py_XDECREF(c.add);
    Py_XDECREF(c.remove);
    Py_XDECREF(c.set_refs);
    Py_XDECREF(c.seq);
    forget_usage(&c);
    if (failed) return NULL;
    return PyLong_FromLongLong(gaps);
}

/* uses_table_api(registry): whether apply_batch reaches this registry's table through its C API (tests) */
static PyObject *uses_table_api(PyObject *self, PyObject *reg) {
    PyObject *t = PyObject_GetAttr(reg, s_t);
    if (t == NULL) return NULL;
    int r = table_api != NULL && Py_TYPE(t) == table_api->type;
    Py_DECREF(t);
    return PyBool_FromLong(r);
}

static PyMethodDef methods[] = {
    {"setup", setup, METH_VARARGS, "setup(Event, DeviceUsage, kinds)"},
    {"uses_table_api", uses_table_api, METH_O, "uses_table_api(registry) -> whether its table is reached in C"},
    {"apply_batch", (PyCFunction)(void (*)(void))apply_batch, METH_FASTCALL,
     "apply_batch(registry, events) -> sequence gaps (Registry.apply_batch, compiled)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moddef = {PyModuleDef_HEAD_INIT, "tt_memtop._native.mirror",
                                    "A monitor's registry mirror, a batch at a time (see mirror.c).", -1, methods};

#define INTERN(var, text)                                                                                        \
    do {                                                                                                          \
        if ((var = PyUnicode_InternFromString(text)) == NULL) return NULL;                                        \
    } while (0)

PyMODINIT_FUNC PyInit_mirror(void) {
    for (int i = 0; i < 3; i++)
        if ((small[i] = PyLong_FromLong(i)) == NULL) return NULL;
    INTERN(s_t, "_t");
    INTERN(s_strings, "_strings");
    INTERN(s_counts, "_counts");
    INTERN(s_usage, "_usage");
    INTERN(s_seq, "seq");
    INTERN(s_unknown, "unknown_frees");
    INTERN(s_unstorable, "unstorable");
    INTERN(s_apply_one, "_apply_one");
    INTERN(s_find, "find");
    INTERN(s_row, "row");
    INTERN(s_add, "add");
    INTERN(s_remove, "remove");
    INTERN(s_set_refs, "set_refs");
    return PyModule_Create(&moddef);
}
