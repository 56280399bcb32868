/* The phase tracker's per-event path (tt_memtop/core/phases/rules.py, deadlines.py), in C.
 *
 * PhaseTracker.observe_batch folds every event of a monitor's batch: ~3.5 us an event in Python, the
 * largest share of the fold. This is its compiled twin: the same operations, in the same order, on the
 * same Python objects (the tracker's Proc, Window and TopDown slots, read and written through their
 * member descriptors' offsets; their dicts, sets and deques through their own methods; the compact
 * LiveTable and Stamps defined here through their slots), for the frequent cases: an ALLOC or a FREE
 * of a known process whose deadlines have not passed, or passed without changing its phase.
 * Everything else is handed to the Python reference at a method boundary: a new process (_new_proc),
 * a passed deadline that may change the phase (_check_quiet), a mesh that changed width (_width), a
 * trace buffer (_on_trace_alloc, _on_trace_free), a counting rule that may fire (_rules), a process
 * that freed its last buffer (_enter), and any other kind of event (observe).
 *
 * Integers are C long long only where the reference's values provably fit: an event is taken here only
 * if its timestamp is within +-2^61, its size below 2^48 and its buffer id below 2^62, and only while
 * every event the tracker has seen was such (the tracker's ``_python_only`` flag, which observe() and
 * this module set otherwise). Then every deadline is a timestamp plus a configured duration (checked
 * below 2^50 ns) and nothing overflows; a tracker that saw anything else stays on the Python path.
 *
 *   setup(Proc, Window, TopDown, Event, phases, alloc_kind, free_kind)   once, from machine.py
 *   LiveTable()   a process's live map (process.py), compact; the per-event path uses its slots
 *   Stamps(maxlen=None)   a process's recent allocation and event times (Proc.allocs, Proc.recent), a
 *                         ring of int64; likewise
 *   observe_batch(tracker, events) -> list[Phase]
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <structmember.h>

#define TS_LIM (1LL << 61)
#define SIZE_LIM (1LL << 48)
#define BID_LIM (1LL << 62)
#define DUR_LIM (1LL << 50)

#define DRAM 0
#define TRACE 4
#define CB 5
#define KERNEL 6
#define TRACE_MIN (64 * 1024)

/* evidence entry kinds (evidence.py) */
enum { K_ALLOC, K_BIG, K_CHURN, K_LONG, K_FREE, K_COMPILE };

/* ---------------------------------------------------------------- slot offsets */
enum {
    P_PHASE, P_SINCE, P_PREV_PHASE, P_SEG_DEVICES, P_CLOSED, P_LIVE, P_LIVE_DRAM, P_DEV_LIVE, P_TRACE,
    P_TRACE_KEYS, P_LAST_BUSY, P_PHASE_BUSY, P_LOADED_UNTIL, P_LAST_COMPILE, P_WINDOW, P_REPLAY_SIGS,
    P_LAST_LEAD, P_PENDING_L1, P_COMPILED_SINCE_BUSY, P_COMPILING, P_LEARN_UNTIL, P_MID_OP, P_TENTATIVE,
    P_DRAM_TAIL, P_LEAD, P_SEQ, P_RECENT, P_ALLOCS, P_QUIET_AT, P_SHOW_AT, P_SHOW_NS, P_LONGEST_PAUSE,
    P_BOUNDARY_PAUSE, P_BOUNDARY_SHOW_NS, P_TEMPS, P_HOLD_UNTIL, P_NEED_CHURN, P_NEED_LONG, P_NEED_LOAD,
    P_NEED_COMPILE, P_N
};
static const char *PROC_NAMES[P_N] = {
    "phase", "since", "prev_phase", "seg_devices", "closed", "live", "live_dram", "dev_live", "trace",
    "trace_keys", "last_busy", "phase_busy", "loaded_until", "last_compile", "window", "replay_sigs",
    "last_lead", "pending_l1", "compiled_since_busy", "compiling", "learn_until", "mid_op", "tentative",
    "dram_tail", "lead", "seq", "recent", "allocs", "quiet_at", "show_at", "show_ns", "longest_pause",
    "boundary_pause", "boundary_show_ns", "temps", "hold_until", "need_churn", "need_long", "need_load",
    "need_compile"};
enum { W_ENTRIES, W_COUNTS, W_SIGS, W_NMAX, W_N };
static const char *WIN_NAMES[W_N] = {"entries", "counts", "sigs", "n"};
enum { T_GAP, T_HIGH, T_LARGEST, T_N };
static const char *TD_NAMES[T_N] = {"gap", "high", "largest"};
enum { E_TS, E_KIND, E_PID, E_DEV, E_BT, E_BID, E_SIZE, E_NAME, E_N };
static const char *EV_NAMES[E_N] = {"ts_ns", "kind", "pid", "device", "buffer_type", "buffer_id", "size", "name"};

static Py_ssize_t proc_off[P_N], win_off[W_N], td_off[T_N], ev_off[E_N];
static PyTypeObject *proc_type, *win_type, *td_type, *event_type;
enum { PH_IDLE, PH_LOADING, PH_WARMUP, PH_CAPTURE, PH_REPLAY, PH_RELEASED, PH_TEARDOWN, PH_EXITED, PH_N };
static PyObject *phase_obj[PH_N];
static PyObject *kind_alloc, *kind_free;
static PyObject *small_int[6]; /* 0..5: entry kinds, space ids */
static int ready = 0;

/* interned names */
static PyObject *s_observe, *s_new_proc, *s_check_quiet, *s_width, *s_on_trace_alloc, *s_on_trace_free, *s_rules,
    *s_enter, *s_get, *s_pop, *s_append, *s_popleft, *s_add, *s_discard, *s_now, *s_procs, *s_python_only,
    *s_topdown, *s_config, *s_load_min_bytes, *s_io_max, *s_young_ns, *s_long_ns, *s_idle_ns, *s_show_ns,
    *s_return_ns, *s_settle_ns, *s_hold_ns, *s_iter_ns, *s_evwin_ns, *s_pause_factor, *s_application,
    *s_APPLICATION, *s_empty;

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

/* A slot's value (borrowed); AttributeError when unset. */
static inline PyObject *get(PyObject *o, Py_ssize_t off, const char *name) {
    PyObject *v = SLOT(o, off);
    if (v == NULL) PyErr_Format(PyExc_AttributeError, "slot %s is not set", name);
    return v;
}
#define PG(proc, f) get((proc), proc_off[f], PROC_NAMES[f])

/* Store into a slot, stealing ``v`` (NULL: an error already set). */
static inline int put(PyObject *o, Py_ssize_t off, PyObject *v) {
    if (v == NULL) return -1;
    PyObject *old = SLOT(o, off);
    SLOT(o, off) = v;
    Py_XDECREF(old);
    return 0;
}
#define PS(proc, f, v) put((proc), proc_off[f], (v))

static inline int as_ll(PyObject *v, long long *out) {
    if (v == NULL) return -1;
    int overflow = 0;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow) {
        PyErr_SetString(PyExc_OverflowError, "phases: an integer out of the compiled path's range");
        return -1;
    }
    if (x == -1 && PyErr_Occurred()) return -1;
    *out = x;
    return 0;
}
static inline int pg_ll(PyObject *proc, int f, long long *out) { return as_ll(PG(proc, f), out); }
static inline int ps_ll(PyObject *proc, int f, long long v) { return PS(proc, f, PyLong_FromLongLong(v)); }
static inline int ps_bool(PyObject *proc, int f, int v) { return PS(proc, f, Py_NewRef(v ? Py_True : Py_False)); }
static inline int pg_true(PyObject *proc, int f) {
    PyObject *v = PG(proc, f);
    return v == NULL ? -1 : PyObject_IsTrue(v);
}

static PyObject *setup(PyObject *self, PyObject *args) {
    PyObject *pt, *wt, *tt, *et, *phases, *ka, *kf;
    if (!PyArg_ParseTuple(args, "O!O!O!O!OOO", &PyType_Type, &pt, &PyType_Type, &wt, &PyType_Type, &tt,
                          &PyType_Type, &et, &phases, &ka, &kf))
        return NULL;
    if (offsets((PyTypeObject *)pt, PROC_NAMES, P_N, proc_off) < 0 ||
        offsets((PyTypeObject *)wt, WIN_NAMES, W_N, win_off) < 0 ||
        offsets((PyTypeObject *)tt, TD_NAMES, T_N, td_off) < 0 ||
        offsets((PyTypeObject *)et, EV_NAMES, E_N, ev_off) < 0)
        return NULL;
    PyObject *seq = PySequence_Fast(phases, "phases must be a sequence");
    if (seq == NULL) return NULL;
    if (PySequence_Fast_GET_SIZE(seq) != PH_N) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_ValueError, "phases: IDLE LOADING WARMUP CAPTURE REPLAY RELEASED TEARDOWN EXITED");
        return NULL;
    }
    for (int i = 0; i < PH_N; i++) Py_XSETREF(phase_obj[i], Py_NewRef(PySequence_Fast_GET_ITEM(seq, i)));
    Py_DECREF(seq);
    Py_XSETREF(proc_type, (PyTypeObject *)Py_NewRef(pt));
    Py_XSETREF(win_type, (PyTypeObject *)Py_NewRef(wt));
    Py_XSETREF(td_type, (PyTypeObject *)Py_NewRef(tt));
    Py_XSETREF(event_type, (PyTypeObject *)Py_NewRef(et));
    Py_XSETREF(kind_alloc, Py_NewRef(ka));
    Py_XSETREF(kind_free, Py_NewRef(kf));
    ready = 1;
    Py_RETURN_NONE;
}

/* ---------------------------------------------------------------- one batch */
typedef struct {
    PyObject *tracker, *procs, *topdown;
    long long now, io_max, young_ns, long_ns, idle_ns, show_ns, return_ns, settle_ns, hold_ns, iter_ns,
        evwin_ns, load_min;
    PyObject *pause_factor; /* a float or an int, as configured */
    int now_dirty;
} Ctx;

static int read_dur(PyObject *tracker, PyObject *name, long long *out, int *ok) {
    PyObject *v = PyObject_GetAttr(tracker, name);
    if (v == NULL) return -1;
    if (!PyLong_CheckExact(v)) {
        *ok = 0;
        Py_DECREF(v);
        return 0;
    }
    int overflow = 0;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    Py_DECREF(v);
    if (x == -1 && PyErr_Occurred()) return -1;
    if (overflow || x < 0 || x > DUR_LIM) *ok = 0;
    *out = x;
    return 0;
}

/* The tracker's now into its ``_now`` before Python code runs (it reads it), and back after. */
static int sync_out(Ctx *c) {
    if (!c->now_dirty) return 0;
    PyObject *v = PyLong_FromLongLong(c->now);
    if (v == NULL) return -1;
    int r = PyObject_SetAttr(c->tracker, s_now, v);
    Py_DECREF(v);
    c->now_dirty = 0;
    return r;
}
/* 1: the compiled path may go on; 0: the tracker's now left its range (the Python path from here on) */
static int sync_in(Ctx *c) {
    PyObject *v = PyObject_GetAttr(c->tracker, s_now);
    if (v == NULL) return -1;
    int overflow = 0;
    long long x = PyLong_CheckExact(v) ? PyLong_AsLongLongAndOverflow(v, &overflow) : (overflow = 1, 0);
    Py_DECREF(v);
    if (x == -1 && PyErr_Occurred()) return -1;
    if (overflow || x > TS_LIM || x < -TS_LIM) return 0;
    c->now = x;
    return 1;
}

/* Call tracker.<name>(*args) with ``_now`` in sync; returns the result (new ref) or NULL. */
static PyObject *call(Ctx *c, PyObject *name, PyObject *const *args, size_t nargs) {
    if (sync_out(c) < 0) return NULL;
    PyObject *stack[8];
    stack[0] = c->tracker;
    for (size_t i = 0; i < nargs; i++) stack[i + 1] = args[i];
    PyObject *r = PyObject_VectorcallMethod(name, stack, (nargs + 1) | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    if (r == NULL) return NULL;
    int ok = sync_in(c);
    if (ok < 0) {
        Py_DECREF(r);
        return NULL;
    }
    return r;
}
static int call0(Ctx *c, PyObject *name, PyObject *const *args, size_t nargs) {
    PyObject *r = call(c, name, args, nargs);
    if (r == NULL) return -1;
    Py_DECREF(r);
    return 0;
}

static inline PyObject *meth1(PyObject *obj, PyObject *name, PyObject *arg) {
    PyObject *stack[2] = {obj, arg};
    return PyObject_VectorcallMethod(name, stack, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}
static inline PyObject *meth2(PyObject *obj, PyObject *name, PyObject *a, PyObject *b) {
    PyObject *stack[3] = {obj, a, b};
    return PyObject_VectorcallMethod(name, stack, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}
static inline int meth1_0(PyObject *obj, PyObject *name, PyObject *arg) {
    PyObject *r = meth1(obj, name, arg);
    if (r == NULL) return -1;
    Py_DECREF(r);
    return 0;
}

#include "bigalloc.h"

/* ---------------------------------------------------------------- LiveTable: a process's live map
 * What the tracker remembers of every live buffer of a process: (device, buffer_id, id space) ->
 * (alloc ts, size, buffer_type), as a dict would (core/phases/process.py). The compact part is one
 * open-addressing table (Robin Hood, linear probing, backward-shift deletion, up to 90 % full) of
 * 16-byte slots: the timestamp, and one word holding the key (buffer_id << 10 | space << 8 | device,
 * + 1) in its low 42 bits and the entry's shape (size << 8 | type) as an index into the table's list
 * of the shapes it has seen (a process allocates a few thousand) in its high 22. Keys or values that
 * do not pack (a device beyond 255, an id of 2^32 or more, a size of 2^56 or more, anything not an
 * int, a 4 millionth shape) go to a plain dict beside it, so any key and value behave as in a dict; a
 * key is in one of the two, never both. ~22 B a live buffer (the rows of a table and their index
 * were ~74). The per-event path below uses the slots directly. */

#define LT_KEY_BITS 42
#define LT_KEY_MASK ((1ULL << LT_KEY_BITS) - 1)
#define LT_SHAPES_MAX ((1LL << (64 - LT_KEY_BITS)) - 1)

typedef struct {
    uint64_t kx; /* shape << 42 | (packed key + 1); 0: an empty slot */
    int64_t ts;
} lt_slot;

typedef struct {
    PyObject_HEAD
    lt_slot *s;
    Py_ssize_t cap, n;
    uint64_t *shapes; /* size << 8 | type, by index */
    uint32_t *shape_ix; /* open addressing: index + 1 into shapes, 0 empty */
    Py_ssize_t nshapes, shapes_cap, ix_cap;
    PyObject *extra; /* NULL or a dict: what does not pack */
} LiveTable;

static PyTypeObject LiveTable_Type;

#define LT_MIN 8

static inline uint64_t lt_k(const lt_slot *e) { return e->kx & LT_KEY_MASK; }
static inline uint64_t lt_sb(const LiveTable *t, const lt_slot *e) { return t->shapes[e->kx >> LT_KEY_BITS]; }
static inline size_t lt_home(uint64_t key, size_t cap) {
    uint64_t h = key * 0x9E3779B97F4A7C15ULL;
    return (size_t)(((unsigned __int128)h * cap) >> 64);
}
static inline size_t lt_dist(const LiveTable *t, size_t i) {
    size_t h = lt_home(lt_k(&t->s[i]), (size_t)t->cap);
    return i >= h ? i - h : i + (size_t)t->cap - h;
}
static inline uint64_t lt_pack(long long dev, long long bid, int space) {
    return ((uint64_t)bid << 10 | (uint64_t)space << 8 | (uint64_t)dev) + 1;
}
static inline int lt_packs(long long dev, long long bid, int space) {
    return dev >= 0 && dev < 256 && bid >= 0 && bid < (1LL << 32) && space >= 0 && space < 3;
}
/* the index of shape ``sb`` (added if new); -2: no room for another, -1 error */
static Py_ssize_t lt_shape(LiveTable *t, uint64_t sb) {
    if (t->ix_cap) {
        size_t i = lt_home(sb, (size_t)t->ix_cap);
        for (;;) {
            uint32_t x = t->shape_ix[i];
            if (x == 0) break;
            if (t->shapes[x - 1] == sb) return (Py_ssize_t)x - 1;
            if (++i == (size_t)t->ix_cap) i = 0;
        }
    }
    if (t->nshapes >= LT_SHAPES_MAX) return -2;
    if (t->nshapes == t->shapes_cap) {
        Py_ssize_t cap = t->shapes_cap ? 2 * t->shapes_cap : 16;
        uint64_t *sh = PyMem_Realloc(t->shapes, sizeof(uint64_t) * (size_t)cap);
        if (sh == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        t->shapes = sh;
        t->shapes_cap = cap;
    }
    if ((t->nshapes + 1) * 2 > t->ix_cap) { /* at most half full */
        Py_ssize_t cap = t->ix_cap ? 2 * t->ix_cap : 32;
        uint32_t *ix = PyMem_Calloc((size_t)cap, sizeof(uint32_t));
        if (ix == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        for (Py_ssize_t j = 0; j < t->nshapes; j++) {
            size_t i = lt_home(t->shapes[j], (size_t)cap);
            while (ix[i]) i = i + 1 == (size_t)cap ? 0 : i + 1;
            ix[i] = (uint32_t)(j + 1);
        }
        PyMem_Free(t->shape_ix);
        t->shape_ix = ix;
        t->ix_cap = cap;
    }
    size_t i = lt_home(sb, (size_t)t->ix_cap);
    while (t->shape_ix[i]) i = i + 1 == (size_t)t->ix_cap ? 0 : i + 1;
    t->shapes[t->nshapes] = sb;
    t->shape_ix[i] = (uint32_t)(t->nshapes + 1);
    return t->nshapes++;
}
/* the slot of ``key``, -1 none */
static inline Py_ssize_t lt_find(const LiveTable *t, uint64_t key) {
    if (t->n == 0) return -1;
    size_t cap = (size_t)t->cap, i = lt_home(key, cap), d = 0;
    for (;;) {
        uint64_t k = lt_k(&t->s[i]);
        if (k == key) return (Py_ssize_t)i;
        if (k == 0 || lt_dist(t, i) < d) return -1;
        if (++i == cap) i = 0;
        d++;
    }
}
/* insert a key known absent, into a table with room */
static void lt_insert_new(lt_slot *s, size_t cap, lt_slot e) {
    size_t i = lt_home(lt_k(&e), cap), d = 0;
    for (;;) {
        if (s[i].kx == 0) {
            s[i] = e;
            return;
        }
        size_t h = lt_home(lt_k(&s[i]), cap), di = i >= h ? i - h : i + cap - h;
        if (di < d) {
            lt_slot x = s[i];
            s[i] = e;
            e = x;
            d = di;
        }
        if (++i == cap) i = 0;
        d++;
    }
}
static int lt_resize(LiveTable *t, Py_ssize_t cap) {
    lt_slot *s = big_calloc((size_t)cap, sizeof(lt_slot));
    if (s == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < t->cap; i++)
        if (t->s[i].kx) lt_insert_new(s, (size_t)cap, t->s[i]);
    big_free(t->s, (size_t)t->cap, sizeof(lt_slot));
    t->s = s;
    t->cap = cap;
    return 0;
}
/* store (key -> ts, sb): 1 replaced (*old_ts, *old_sb: the previous entry's), 0 new, -2 the shape does
 * not fit (nothing stored), -1 error */
static int lt_put(LiveTable *t, uint64_t key, int64_t ts, uint64_t sb, int64_t *old_ts, uint64_t *old_sb) {
    Py_ssize_t shape = lt_shape(t, sb);
    if (shape < 0) return (int)shape;
    uint64_t kx = (uint64_t)shape << LT_KEY_BITS | key;
    Py_ssize_t i = lt_find(t, key);
    if (i >= 0) {
        if (old_ts) *old_ts = t->s[i].ts;
        if (old_sb) *old_sb = lt_sb(t, &t->s[i]);
        t->s[i].kx = kx;
        t->s[i].ts = ts;
        return 1;
    }
    if ((t->n + 1) * 10 > t->cap * 9) {
        Py_ssize_t cap = t->cap < LT_MIN ? LT_MIN : t->cap < 4096 ? 2 * t->cap : t->cap + t->cap / 2;
        if (lt_resize(t, cap) < 0) return -1;
    }
    lt_slot e = {kx, ts};
    lt_insert_new(t->s, (size_t)t->cap, e);
    t->n++;
    return 0;
}
/* remove slot i (backward shift), shrinking a table left mostly empty */
static int lt_remove_at(LiveTable *t, Py_ssize_t i) {
    size_t cap = (size_t)t->cap, j = (size_t)i;
    for (;;) {
        size_t k = j + 1 == cap ? 0 : j + 1;
        if (t->s[k].kx == 0 || lt_dist(t, k) == 0) break;
        t->s[j] = t->s[k];
        j = k;
    }
    t->s[j].kx = 0;
    t->n--;
    if (t->cap > 64 && t->n * 5 < t->cap) { /* under a fifth full: back to about half full */
        PyObject *et, *ev, *tb;
        PyErr_Fetch(&et, &ev, &tb);
        if (lt_resize(t, t->n * 2 > LT_MIN ? t->n * 2 : LT_MIN) < 0) PyErr_Clear(); /* stays as it was */
        PyErr_Restore(et, ev, tb);
    }
    return 0;
}
static inline int lt_extra_any(const LiveTable *t) { return t->extra != NULL && PyDict_GET_SIZE(t->extra) > 0; }

/* a Python key that packs: 1 (*out), 0 not, -1 error */
static int lt_key_of(PyObject *key, uint64_t *out) {
    if (!PyTuple_CheckExact(key) || PyTuple_GET_SIZE(key) != 3) return 0;
    long long v[3];
    for (int i = 0; i < 3; i++) {
        PyObject *x = PyTuple_GET_ITEM(key, i);
        if (!PyLong_Check(x)) return 0;
        int o = 0;
        v[i] = PyLong_AsLongLongAndOverflow(x, &o);
        if (v[i] == -1 && PyErr_Occurred()) return -1;
        if (o) return 0;
    }
    if (v[2] < 0 || v[2] > 2 || !lt_packs(v[0], v[1], (int)v[2])) return 0;
    *out = lt_pack(v[0], v[1], (int)v[2]);
    return 1;
}
/* a Python value (ts, size, type) that packs: 1, 0 not, -1 error */
static int lt_value_of(PyObject *v, int64_t *ts, uint64_t *sb) {
    if (!PyTuple_CheckExact(v) || PyTuple_GET_SIZE(v) != 3) return 0;
    long long x[3];
    for (int i = 0; i < 3; i++) {
        PyObject *o = PyTuple_GET_ITEM(v, i);
        if (!PyLong_CheckExact(o)) return 0;
        int ovf = 0;
        x[i] = PyLong_AsLongLongAndOverflow(o, &ovf);
        if (x[i] == -1 && PyErr_Occurred()) return -1;
        if (ovf) return 0;
    }
    if (x[1] < 0 || x[1] >= (1LL << 56) || x[2] < 0 || x[2] > 255) return 0;
    *ts = x[0];
    *sb = (uint64_t)x[1] << 8 | (uint64_t)x[2];
    return 1;
}
static PyObject *lt_value(const LiveTable *t, const lt_slot *e) {
    uint64_t sb = lt_sb(t, e);
    PyObject *a = PyLong_FromLongLong(e->ts), *b = PyLong_FromUnsignedLongLong(sb >> 8),
             *c = PyLong_FromLong((long)(sb & 255));
    PyObject *r = a && b && c ? PyTuple_Pack(3, a, b, c) : NULL;
    Py_XDECREF(a);
    Py_XDECREF(b);
    Py_XDECREF(c);
    return r;
}

static PyObject *lt_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    if (PyTuple_GET_SIZE(args) || (kw && PyDict_GET_SIZE(kw))) {
        PyErr_SetString(PyExc_TypeError, "LiveTable() takes no arguments");
        return NULL;
    }
    LiveTable *t = (LiveTable *)type->tp_alloc(type, 0);
    return (PyObject *)t;
}
static int lt_traverse(LiveTable *t, visitproc visit, void *arg) {
    Py_VISIT(t->extra);
    return 0;
}
static int lt_clear(LiveTable *t) {
    Py_CLEAR(t->extra);
    return 0;
}
static void lt_dealloc(LiveTable *t) {
    PyObject_GC_UnTrack(t);
    lt_clear(t);
    big_free(t->s, (size_t)t->cap, sizeof(lt_slot));
    PyMem_Free(t->shapes);
    PyMem_Free(t->shape_ix);
    Py_TYPE(t)->tp_free((PyObject *)t);
}
/* the value under key (new ref), or ``dflt`` (new ref; NULL: KeyError) */
static PyObject *lt_lookup(LiveTable *t, PyObject *key, PyObject *dflt) {
    uint64_t k;
    int p = lt_key_of(key, &k);
    if (p < 0) return NULL;
    if (p) {
        Py_ssize_t i = lt_find(t, k);
        if (i >= 0) return lt_value(t, &t->s[i]);
    }
    if (lt_extra_any(t)) {
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
static PyObject *lt_get(LiveTable *t, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "get(key, default=None)");
        return NULL;
    }
    return lt_lookup(t, args[0], nargs > 1 ? args[1] : Py_None);
}
static PyObject *lt_pop(LiveTable *t, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "pop(key, default=None)");
        return NULL;
    }
    PyObject *key = args[0], *dflt = nargs > 1 ? args[1] : Py_None;
    uint64_t k;
    int p = lt_key_of(key, &k);
    if (p < 0) return NULL;
    if (p) {
        Py_ssize_t i = lt_find(t, k);
        if (i >= 0) {
            PyObject *v = lt_value(t, &t->s[i]);
            if (v == NULL) return NULL;
            lt_remove_at(t, i);
            return v;
        }
    }
    if (lt_extra_any(t)) {
        PyObject *stack[3] = {t->extra, key, dflt};
        PyObject *name = PyUnicode_InternFromString("pop");
        PyObject *r = name ? PyObject_VectorcallMethod(name, stack, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL) : NULL;
        Py_XDECREF(name);
        return r;
    }
    return Py_NewRef(dflt);
}
static PyObject *lt_subscript(LiveTable *t, PyObject *key) { return lt_lookup(t, key, NULL); }
static int lt_ass(LiveTable *t, PyObject *key, PyObject *value) {
    uint64_t k;
    int p = lt_key_of(key, &k);
    if (p < 0) return -1;
    if (value == NULL) { /* del t[key] */
        if (p) {
            Py_ssize_t i = lt_find(t, k);
            if (i >= 0) return lt_remove_at(t, i);
        }
        if (lt_extra_any(t)) return PyDict_DelItem(t->extra, key);
        PyErr_SetObject(PyExc_KeyError, key);
        return -1;
    }
    int64_t ts;
    uint64_t sb;
    int v = p ? lt_value_of(value, &ts, &sb) : 0;
    if (v < 0) return -1;
    if (v) {
        int r = lt_put(t, k, ts, sb, NULL, NULL);
        if (r == -1) return -1;
        v = r != -2; /* no room for another shape: into the dict */
    }
    if (v) {
        if (lt_extra_any(t)) {
            int r = PyDict_Contains(t->extra, key);
            if (r < 0 || (r && PyDict_DelItem(t->extra, key) < 0)) return -1;
        }
        return 0;
    }
    if (p) {
        Py_ssize_t i = lt_find(t, k);
        if (i >= 0) lt_remove_at(t, i);
    }
    if (t->extra == NULL && (t->extra = PyDict_New()) == NULL) return -1;
    return PyDict_SetItem(t->extra, key, value);
}
static Py_ssize_t lt_len(LiveTable *t) { return t->n + (t->extra ? PyDict_GET_SIZE(t->extra) : 0); }
static int lt_contains(LiveTable *t, PyObject *key) {
    uint64_t k;
    int p = lt_key_of(key, &k);
    if (p < 0) return -1;
    if (p && lt_find(t, k) >= 0) return 1;
    return lt_extra_any(t) ? PyDict_Contains(t->extra, key) : 0;
}
static PyObject *lt_nbytes(LiveTable *t, PyObject *unused) {
    return PyLong_FromSsize_t((Py_ssize_t)sizeof(LiveTable) + t->cap * (Py_ssize_t)sizeof(lt_slot) +
                              t->shapes_cap * 8 + t->ix_cap * 4);
}

static PyMethodDef lt_methods[] = {
    {"get", (PyCFunction)(void (*)(void))lt_get, METH_FASTCALL, "get(key, default=None)"},
    {"pop", (PyCFunction)(void (*)(void))lt_pop, METH_FASTCALL, "pop(key, default=None)"},
    {"nbytes", (PyCFunction)lt_nbytes, METH_NOARGS, "bytes held by the compact part"},
    {NULL, NULL, 0, NULL},
};
static PyMappingMethods lt_mapping = {(lenfunc)lt_len, (binaryfunc)lt_subscript, (objobjargproc)lt_ass};
static PySequenceMethods lt_sequence = {.sq_contains = (objobjproc)lt_contains};

static PyTypeObject LiveTable_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "tt_memtop._native.phases.LiveTable",
    .tp_basicsize = sizeof(LiveTable),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "A process's live buffers: (device, buffer_id, space) -> (ts, size, buffer_type), compact.",
    .tp_new = lt_new,
    .tp_dealloc = (destructor)lt_dealloc,
    .tp_traverse = (traverseproc)lt_traverse,
    .tp_clear = (inquiry)lt_clear,
    .tp_methods = lt_methods,
    .tp_as_mapping = &lt_mapping,
    .tp_as_sequence = &lt_sequence,
};

/* ---------------------------------------------------------------- Stamps: a process's recent allocation times
 * The times of a process's allocations in the evidence window (Proc.allocs), oldest first, as a deque
 * would hold them: append, popleft, [i], len, iteration. A monitor folding 200k events/s keeps up to
 * 400k of them; a deque of ints held a pointer and an int object (~40 B) each, this holds 8 bytes (a
 * ring of int64 that doubles and halves). A value that is not an int64 (a tracker on the Python path,
 * a crafted recording) turns it into a plain deque for good. */

typedef struct {
    PyObject_HEAD
    int64_t *v;
    Py_ssize_t cap, head, n; /* ring: items v[(head + i) % cap], i < n */
    Py_ssize_t maxlen;       /* as a deque's (append drops the oldest when full); -1 none */
    PyObject *spill;         /* NULL, or the deque holding everything */
} Stamps;

static PyTypeObject Stamps_Type;

static int st_grow(Stamps *s, Py_ssize_t cap) {
    int64_t *v = big_calloc((size_t)cap, sizeof(int64_t));
    if (v == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < s->n; i++) v[i] = s->v[(s->head + i) % s->cap];
    big_free(s->v, (size_t)s->cap, sizeof(int64_t));
    s->v = v;
    s->cap = cap;
    s->head = 0;
    return 0;
}
static inline int st_push(Stamps *s, int64_t x) {
    if (s->n == s->cap && st_grow(s, s->cap < 16 ? 16 : 2 * s->cap) < 0) return -1;
    s->v[(s->head + s->n) % s->cap] = x;
    s->n++;
    return 0;
}
static inline void st_drop_first(Stamps *s) {
    s->head = s->head + 1 == s->cap ? 0 : s->head + 1;
    s->n--;
    if (s->cap > 256 && s->n * 4 < s->cap) {
        PyObject *et, *ev, *tb;
        PyErr_Fetch(&et, &ev, &tb);
        if (st_grow(s, s->cap / 2) < 0) PyErr_Clear(); /* stays as it was */
        PyErr_Restore(et, ev, tb);
    }
}
static inline int64_t st_at(const Stamps *s, Py_ssize_t i) { return s->v[(s->head + i) % s->cap]; }

/* everything into a deque, from now on */
static int st_spill(Stamps *s) {
    PyObject *collections = PyImport_ImportModule("collections");
    PyObject *dq = NULL;
    if (collections != NULL)
        dq = s->maxlen >= 0 ? PyObject_CallMethod(collections, "deque", "()n", s->maxlen)
                           : PyObject_CallMethod(collections, "deque", NULL);
    Py_XDECREF(collections);
    if (dq == NULL) return -1;
    for (Py_ssize_t i = 0; i < s->n; i++) {
        PyObject *x = PyLong_FromLongLong(st_at(s, i));
        PyObject *r = x ? PyObject_CallMethod(dq, "append", "O", x) : NULL;
        Py_XDECREF(x);
        if (r == NULL) {
            Py_DECREF(dq);
            return -1;
        }
        Py_DECREF(r);
    }
    big_free(s->v, (size_t)s->cap, sizeof(int64_t));
    s->v = NULL;
    s->cap = s->n = s->head = 0;
    s->spill = dq;
    return 0;
}

static PyObject *st_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    static char *names[] = {"maxlen", NULL};
    PyObject *ml = Py_None;
    Py_ssize_t maxlen = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|O:Stamps", names, &ml)) return NULL;
    if (ml != Py_None) {
        maxlen = PyLong_AsSsize_t(ml);
        if (maxlen == -1 && PyErr_Occurred()) return NULL;
        if (maxlen < 0) {
            PyErr_SetString(PyExc_ValueError, "maxlen must be non-negative");
            return NULL;
        }
    }
    Stamps *s = (Stamps *)type->tp_alloc(type, 0);
    if (s != NULL) s->maxlen = maxlen;
    return (PyObject *)s;
}
/* append(x) on the ring, as a deque with maxlen does */
static inline int st_append_c(Stamps *s, int64_t x) {
    if (s->maxlen == 0) return 0;
    if (s->maxlen > 0 && s->n == s->maxlen) st_drop_first(s);
    return st_push(s, x);
}
static int st_traverse(Stamps *s, visitproc visit, void *arg) {
    Py_VISIT(s->spill);
    return 0;
}
static int st_clear(Stamps *s) {
    Py_CLEAR(s->spill);
    return 0;
}
static void st_dealloc(Stamps *s) {
    PyObject_GC_UnTrack(s);
    st_clear(s);
    big_free(s->v, (size_t)s->cap, sizeof(int64_t));
    Py_TYPE(s)->tp_free((PyObject *)s);
}
static PyObject *st_append(Stamps *s, PyObject *x) {
    if (s->spill == NULL) {
        if (PyLong_CheckExact(x)) {
            int o = 0;
            long long v = PyLong_AsLongLongAndOverflow(x, &o);
            if (v == -1 && PyErr_Occurred()) return NULL;
            if (!o) {
                if (st_append_c(s, v) < 0) return NULL;
                Py_RETURN_NONE;
            }
        }
        if (st_spill(s) < 0) return NULL;
    }
    return PyObject_CallMethod(s->spill, "append", "O", x);
}
static PyObject *st_popleft(Stamps *s, PyObject *unused) {
    if (s->spill != NULL) return PyObject_CallMethod(s->spill, "popleft", NULL);
    if (s->n == 0) {
        PyErr_SetString(PyExc_IndexError, "pop from an empty deque");
        return NULL;
    }
    int64_t x = st_at(s, 0);
    st_drop_first(s);
    return PyLong_FromLongLong(x);
}
static Py_ssize_t st_len(Stamps *s) { return s->spill != NULL ? PyObject_Length(s->spill) : s->n; }
static PyObject *st_item(Stamps *s, Py_ssize_t i) {
    if (s->spill != NULL) return PySequence_GetItem(s->spill, i);
    if (i < 0) i += s->n;
    if (i < 0 || i >= s->n) {
        PyErr_SetString(PyExc_IndexError, "deque index out of range");
        return NULL;
    }
    return PyLong_FromLongLong(st_at(s, i));
}
static PyObject *st_list(Stamps *s) {
    if (s->spill != NULL) return PySequence_List(s->spill);
    PyObject *out = PyList_New(s->n);
    if (out == NULL) return NULL;
    for (Py_ssize_t i = 0; i < s->n; i++) {
        PyObject *x = PyLong_FromLongLong(st_at(s, i));
        if (x == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, x);
    }
    return out;
}
static PyObject *st_iter(Stamps *s) {
    PyObject *l = st_list(s);
    if (l == NULL) return NULL;
    PyObject *it = PyObject_GetIter(l);
    Py_DECREF(l);
    return it;
}
static PyObject *st_nbytes(Stamps *s, PyObject *unused) {
    return PyLong_FromSsize_t((Py_ssize_t)sizeof(Stamps) + s->cap * (Py_ssize_t)sizeof(int64_t));
}
static PyMethodDef st_methods[] = {
    {"append", (PyCFunction)st_append, METH_O, "append(ts)"},
    {"popleft", (PyCFunction)st_popleft, METH_NOARGS, "popleft() -> the oldest"},
    {"nbytes", (PyCFunction)st_nbytes, METH_NOARGS, "bytes held by the ring"},
    {NULL, NULL, 0, NULL},
};
static PySequenceMethods st_sequence = {.sq_length = (lenfunc)st_len, .sq_item = (ssizeargfunc)st_item};

static PyTypeObject Stamps_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "tt_memtop._native.phases.Stamps",
    .tp_basicsize = sizeof(Stamps),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "A process's recent allocation times, oldest first: a deque of int64.",
    .tp_new = st_new,
    .tp_dealloc = (destructor)st_dealloc,
    .tp_traverse = (traverseproc)st_traverse,
    .tp_clear = (inquiry)st_clear,
    .tp_iter = (getiterfunc)st_iter,
    .tp_methods = st_methods,
    .tp_as_sequence = &st_sequence,
};

/* The per-event path's view of a process's live map: LiveTable slots when the map is a LiveTable
 * with nothing beside it and the key packs, the map's own methods otherwise. */
static inline LiveTable *lt_fast(PyObject *live, long long dev, long long bid, int space) {
    if (Py_TYPE(live) != &LiveTable_Type) return NULL;
    LiveTable *t = (LiveTable *)live;
    return !lt_extra_any(t) && lt_packs(dev, bid, space) ? t : NULL;
}
static int lm_bool(PyObject *live) {
    if (Py_TYPE(live) == &LiveTable_Type) {
        LiveTable *t = (LiveTable *)live;
        return t->n > 0 || lt_extra_any(t);
    }
    return PyObject_IsTrue(live);
}

static inline long mesh_width(PyObject *proc) {
    PyObject *d = PG(proc, P_DEV_LIVE);
    if (d == NULL) return -1;
    Py_ssize_t n = PyObject_Size(d);
    if (n < 0) return -1;
    return n > 1 ? (long)n : 1;
}

/* counts[k] of a Window (its list: clear() replaces it) */
static int count_of(PyObject *win, int k, long long *out) {
    PyObject *counts = get(win, win_off[W_COUNTS], "counts");
    if (counts == NULL) return -1;
    if (PyList_CheckExact(counts) && k < PyList_GET_SIZE(counts)) return as_ll(PyList_GET_ITEM(counts, k), out);
    PyObject *v = PySequence_GetItem(counts, k);
    if (v == NULL) return -1;
    int r = as_ll(v, out);
    Py_DECREF(v);
    return r;
}
static int count_add(PyObject *counts, int k, long delta) {
    if (PyList_CheckExact(counts) && k < PyList_GET_SIZE(counts) && PyLong_CheckExact(PyList_GET_ITEM(counts, k))) {
        int o = 0;
        long v = PyLong_AsLongAndOverflow(PyList_GET_ITEM(counts, k), &o);
        if (!o && v > -(1L << 40) && v < (1L << 40)) { /* the list's own int, plus delta: what += makes */
            PyObject *nv = PyLong_FromLong(v + delta);
            if (nv == NULL) return -1;
            PyObject *old = PyList_GET_ITEM(counts, k);
            PyList_SET_ITEM(counts, k, nv);
            Py_DECREF(old);
            return 0;
        }
    }
    PyObject *v = PySequence_GetItem(counts, k);
    if (v == NULL) return -1;
    PyObject *d = PyLong_FromLong(delta);
    if (d == NULL) {
        Py_DECREF(v);
        return -1;
    }
    PyObject *nv = PyNumber_Add(v, d);
    Py_DECREF(v);
    Py_DECREF(d);
    if (nv == NULL) return -1;
    int r = PySequence_SetItem(counts, k, nv);
    Py_DECREF(nv);
    return r;
}

/* Window.add(kind, ts, start, sig, key) (evidence.py), sig/key NULL for None */
static int window_add(PyObject *win, int kind, PyObject *ts, PyObject *start, PyObject *sig, PyObject *key) {
    PyObject *entries = get(win, win_off[W_ENTRIES], "entries");
    if (entries == NULL) return -1;
    PyObject *e = PyTuple_Pack(5, small_int[kind], ts, start, sig ? sig : Py_None, key ? key : Py_None);
    if (e == NULL) return -1;
    int r = meth1_0(entries, s_append, e);
    Py_DECREF(e);
    if (r < 0) return -1;
    PyObject *counts = get(win, win_off[W_COUNTS], "counts");
    if (counts == NULL || count_add(counts, kind, 1) < 0) return -1;
    if (sig != NULL) {
        PyObject *sigs = get(win, win_off[W_SIGS], "sigs");
        if (sigs == NULL) return -1;
        PyObject *n = PyDict_GetItemWithError(sigs, sig);
        if (n == NULL && PyErr_Occurred()) return -1;
        PyObject *one = small_int[1];
        PyObject *nv = n == NULL ? Py_NewRef(one) : PyNumber_Add(n, one);
        if (nv == NULL) return -1;
        r = PyDict_SetItem(sigs, sig, nv);
        Py_DECREF(nv);
        if (r < 0) return -1;
    }
    Py_ssize_t len = PyObject_Size(entries);
    if (len < 0) return -1;
    PyObject *nmax = get(win, win_off[W_NMAX], "n");
    if (nmax == NULL) return -1;
    int over;
    long long nm;
    int o = 0;
    if (PyLong_CheckExact(nmax) && (nm = PyLong_AsLongLongAndOverflow(nmax, &o), !o) && !PyErr_Occurred()) {
        over = (long long)len > nm;
    } else {
        PyErr_Clear();
        PyObject *lenobj = PyLong_FromSsize_t(len);
        if (lenobj == NULL) return -1;
        over = PyObject_RichCompareBool(lenobj, nmax, Py_GT);
        Py_DECREF(lenobj);
    }
    if (over < 0) return -1;
    if (!over) return 0;
    /* _pop */
    PyObject *old = PyObject_CallMethodNoArgs(entries, s_popleft);
    if (old == NULL) return -1;
    if (!PyTuple_Check(old) || PyTuple_GET_SIZE(old) != 5) {
        Py_DECREF(old);
        PyErr_SetString(PyExc_TypeError, "a window entry is not a 5-tuple");
        return -1;
    }
    long long okind;
    if (as_ll(PyTuple_GET_ITEM(old, 0), &okind) < 0 || okind < 0 || okind > 5) {
        Py_DECREF(old);
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_IndexError, "window entry kind");
        return -1;
    }
    counts = get(win, win_off[W_COUNTS], "counts");
    if (counts == NULL || count_add(counts, (int)okind, -1) < 0) {
        Py_DECREF(old);
        return -1;
    }
    PyObject *osig = PyTuple_GET_ITEM(old, 3);
    if (osig != Py_None) {
        PyObject *sigs = get(win, win_off[W_SIGS], "sigs");
        PyObject *n = sigs ? PyDict_GetItemWithError(sigs, osig) : NULL;
        if (n == NULL) {
            if (!PyErr_Occurred()) PyErr_SetObject(PyExc_KeyError, osig);
            Py_DECREF(old);
            return -1;
        }
        PyObject *nv = PyNumber_Subtract(n, small_int[1]);
        if (nv == NULL) {
            Py_DECREF(old);
            return -1;
        }
        int t = PyObject_IsTrue(nv);
        r = t < 0 ? -1 : t ? PyDict_SetItem(sigs, osig, nv) : PyDict_DelItem(sigs, osig);
        Py_DECREF(nv);
        if (r < 0) {
            Py_DECREF(old);
            return -1;
        }
    }
    Py_DECREF(old);
    return 0;
}

static inline int is_phase(PyObject *proc, int ph) {
    PyObject *p = SLOT(proc, proc_off[P_PHASE]);
    return p == phase_obj[ph];
}

/* 1 if tracker._rules(proc, kind, start) may do something after an entry of ``kind``; 0 if it surely does
 * nothing (it then returns at its first checks, with no side effect). */
static int rules_may_fire(PyObject *proc, int kind, long long start) {
    if (PG(proc, P_PHASE) == NULL) return -1;
    if (is_phase(proc, PH_CAPTURE) || is_phase(proc, PH_EXITED)) return 0;
    PyObject *win = PG(proc, P_WINDOW);
    if (win == NULL) return -1;
    long long c_churn, c_compile, need_churn, need_compile, c_long, need_long, c_alloc, c_big, need_load, since;
    int tentative;
    switch (kind) {
    case K_CHURN:
    case K_COMPILE:
        if (count_of(win, K_CHURN, &c_churn) < 0 || count_of(win, K_COMPILE, &c_compile) < 0 ||
            pg_ll(proc, P_NEED_CHURN, &need_churn) < 0 || pg_ll(proc, P_NEED_COMPILE, &need_compile) < 0)
            return -1;
        if ((tentative = pg_true(proc, P_TENTATIVE)) < 0) return -1;
        if ((c_churn >= need_churn || c_compile >= need_compile) && tentative) return 1;
        if (pg_ll(proc, P_SINCE, &since) < 0) return -1;
        if (is_phase(proc, PH_WARMUP) && start < since) return 1; /* maybe a backdate */
        return is_phase(proc, PH_WARMUP) || is_phase(proc, PH_TEARDOWN) ? 0 : 1;
    case K_LONG:
        if (is_phase(proc, PH_TEARDOWN)) return 0;
        if (count_of(win, K_LONG, &c_long) < 0 || pg_ll(proc, P_NEED_LONG, &need_long) < 0) return -1;
        return c_long >= need_long;
    case K_ALLOC:
        if (!is_phase(proc, PH_WARMUP)) return 0;
        if ((tentative = pg_true(proc, P_TENTATIVE)) < 0) return -1;
        if (!tentative) return 0;
        if (count_of(win, K_ALLOC, &c_alloc) < 0 || count_of(win, K_CHURN, &c_churn) < 0) return -1;
        long w = mesh_width(proc);
        if (w < 0) return -1;
        return c_alloc >= 6LL * w && !c_churn;
    case K_BIG:
        if (count_of(win, K_BIG, &c_big) < 0 || pg_ll(proc, P_NEED_LOAD, &need_load) < 0) return -1;
        if (is_phase(proc, PH_WARMUP)) {
            if ((tentative = pg_true(proc, P_TENTATIVE)) < 0) return -1;
            return tentative && c_big >= 3 * need_load;
        }
        return (is_phase(proc, PH_IDLE) || is_phase(proc, PH_RELEASED)) && c_big >= need_load;
    default:
        return 0;
    }
}

/* EventRules._entry: into the window, then the rules (in Python, when they may fire). */
static int entry(Ctx *c, PyObject *proc, int kind, PyObject *ts, PyObject *start, PyObject *sig, PyObject *key) {
    PyObject *win = PG(proc, P_WINDOW);
    if (win == NULL) return -1;
    Py_INCREF(win);
    int r = window_add(win, kind, ts, start, sig, key);
    Py_DECREF(win);
    if (r < 0) return -1;
    long long st;
    if (as_ll(start, &st) < 0) return -1;
    int fire = rules_may_fire(proc, kind, st);
    if (fire <= 0) return fire;
    PyObject *args[3] = {proc, small_int[kind], start};
    return call0(c, s_rules, args, 3);
}

/* Deadlines._busy */
static int busy(Ctx *c, PyObject *proc, long long ts, int mid_op, int boundary) {
    long long last_busy, pb;
    if (pg_ll(proc, P_LAST_BUSY, &last_busy) < 0) return -1;
    long long pause = ts - last_busy;
    if (ps_ll(proc, P_LAST_BUSY, ts) < 0) return -1;
    if (pg_ll(proc, P_PHASE_BUSY, &pb) < 0 || ps_ll(proc, P_PHASE_BUSY, pb + 1) < 0) return -1;
    if (PG(proc, P_PHASE) == NULL) return -1;
    int warmup = is_phase(proc, PH_WARMUP), loading = is_phase(proc, PH_LOADING);
    int csb = pg_true(proc, P_COMPILED_SINCE_BUSY);
    if (csb < 0) return -1;
    int jit = csb || (mid_op && warmup);
    if (ps_bool(proc, P_COMPILED_SINCE_BUSY, 0) < 0) return -1;
    long long idle_ns = c->idle_ns;
    PyObject *trace = PG(proc, P_TRACE);
    if (trace == NULL) return -1;
    int has_trace = PyObject_IsTrue(trace);
    if (has_trace < 0) return -1;
    PyObject *win = PG(proc, P_WINDOW);
    if (win == NULL) return -1;
    long long quiet_at, compile;
    if (loading || (warmup && !has_trace)) {
        long long longest, bpause;
        if (pg_ll(proc, P_LONGEST_PAUSE, &longest) < 0) return -1;
        long long scaled = 0;
        if (!jit && pause < idle_ns && (pause > longest || boundary)) {
            if (PyFloat_CheckExact(c->pause_factor)) {
                scaled = (long long)(PyFloat_AS_DOUBLE(c->pause_factor) * (double)pause);
            } else {
                PyObject *p = PyLong_FromLongLong(pause);
                PyObject *m = p ? PyNumber_Multiply(c->pause_factor, p) : NULL;
                Py_XDECREF(p);
                if (m == NULL) return -1;
                PyObject *i = PyNumber_Long(m);
                Py_DECREF(m);
                if (i == NULL) return -1;
                int r = as_ll(i, &scaled);
                Py_DECREF(i);
                if (r < 0) return -1;
            }
        }
        long long show = scaled > c->show_ns ? scaled : c->show_ns;
        if (show > idle_ns) show = idle_ns;
        if (pause > longest && pause < idle_ns && !jit) {
            if (ps_ll(proc, P_LONGEST_PAUSE, pause) < 0 || ps_ll(proc, P_SHOW_NS, show) < 0) return -1;
        }
        if (pg_ll(proc, P_BOUNDARY_PAUSE, &bpause) < 0) return -1;
        if (boundary && pause > bpause && pause < idle_ns && !jit) {
            if (ps_ll(proc, P_BOUNDARY_PAUSE, pause) < 0 || ps_ll(proc, P_BOUNDARY_SHOW_NS, show) < 0) return -1;
        }
        if (count_of(win, K_COMPILE, &compile) < 0) return -1;
        int slow = compile != 0;
        if (!slow && warmup) {
            int mo = pg_true(proc, P_MID_OP);
            if (mo < 0) return -1;
            slow = mo;
        }
        long long temps, shown;
        if (pg_ll(proc, P_TEMPS, &temps) < 0) return -1;
        if (pg_ll(proc, warmup && !temps ? P_BOUNDARY_SHOW_NS : P_SHOW_NS, &shown) < 0) return -1;
        if (ps_ll(proc, P_SHOW_AT, ts + (slow ? idle_ns : shown)) < 0) return -1;
        quiet_at = ts + idle_ns;
        PyObject *pending = PG(proc, P_PENDING_L1);
        if (pending == NULL) return -1;
        if (pending != Py_None) {
            long long cur;
            if (pg_ll(proc, P_QUIET_AT, &cur) < 0) return -1;
            if (cur < quiet_at) quiet_at = cur;
        }
        PyObject *tail = PG(proc, P_DRAM_TAIL);
        if (tail == NULL) return -1;
        if (tail != Py_None && ts + c->return_ns < quiet_at) quiet_at = ts + c->return_ns;
        return ps_ll(proc, P_QUIET_AT, quiet_at);
    }
    if (warmup) {
        if (count_of(win, K_COMPILE, &compile) < 0) return -1;
        int slow = compile != 0;
        if (!slow) {
            int mo = pg_true(proc, P_MID_OP);
            if (mo < 0) return -1;
            slow = mo;
        }
        return ps_ll(proc, P_QUIET_AT, ts + (slow ? idle_ns : c->return_ns));
    }
    if (is_phase(proc, PH_CAPTURE)) return ps_ll(proc, P_QUIET_AT, ts + c->settle_ns);
    if (is_phase(proc, PH_REPLAY) || is_phase(proc, PH_IDLE)) {
        PyObject *pending = PG(proc, P_PENDING_L1);
        if (pending == NULL) return -1;
        if (pending != Py_None) {
            long long cur, at;
            if (pg_ll(proc, P_QUIET_AT, &cur) < 0) return -1;
            if (!PyTuple_Check(pending) || PyTuple_GET_SIZE(pending) < 1) {
                PyErr_SetString(PyExc_TypeError, "pending_l1 is not a tuple");
                return -1;
            }
            if (as_ll(PyTuple_GET_ITEM(pending, 0), &at) < 0) return -1;
            return ps_ll(proc, P_QUIET_AT, cur < at + c->hold_ns ? cur : at + c->hold_ns);
        }
    }
    return 0;
}

/* TopDown.classify (evidence.py) */
static int classify(Ctx *c, PyObject *dev, long long address, PyObject *addr_obj, long long size, PyObject *size_obj) {
    PyObject *td = c->topdown;
    PyObject *highd = get(td, td_off[T_HIGH], "high"), *larg = get(td, td_off[T_LARGEST], "largest");
    PyObject *gapo = get(td, td_off[T_GAP], "gap");
    if (highd == NULL || larg == NULL || gapo == NULL) return -1;
    long long high = 0, largest = 0, gap;
    PyObject *v = PyDict_GetItemWithError(highd, dev);
    if (v == NULL && PyErr_Occurred()) return -1;
    if (v != NULL && as_ll(v, &high) < 0) return -1;
    v = PyDict_GetItemWithError(larg, dev);
    if (v == NULL && PyErr_Occurred()) return -1;
    if (v != NULL && as_ll(v, &largest) < 0) return -1;
    if (as_ll(gapo, &gap) < 0) return -1;
    if (high && address > high + largest + gap) return 2;
    if (size > largest && PyDict_SetItem(larg, dev, size_obj) < 0) return -1;
    if (address > high) {
        if (PyDict_SetItem(highd, dev, addr_obj) < 0) return -1;
        return high ? 1 : 0;
    }
    return 0;
}

static inline int eq(PyObject *a, PyObject *b) { return a == b ? 1 : PyObject_RichCompareBool(a, b, Py_EQ); }

static int contains(PyObject *set, PyObject *v) { return PySequence_Contains(set, v); }

/* EventRules._on_alloc */
static int on_alloc(Ctx *c, PyObject *proc, PyObject *ev, long long ts, PyObject *tso) {
    PyObject *dev = SLOT(ev, ev_off[E_DEV]), *bid = SLOT(ev, ev_off[E_BID]), *sizeo = SLOT(ev, ev_off[E_SIZE]);
    PyObject *bto = SLOT(ev, ev_off[E_BT]);
    long long size = PyLong_AsLongLong(sizeo), bidv = PyLong_AsLongLong(bid);
    long btype = PyLong_AsLong(bto);
    int space = btype == CB ? 1 : btype == KERNEL ? 2 : 0;
    int rc = -1;
    PyObject *key = NULL; /* (dev, bid, space), built only where it is stored or a generic map needs it */
    PyObject *old = NULL, *val = NULL, *sig = NULL, *t = NULL;
    int top = 0;
    if (btype == DRAM && size > c->io_max) {
        top = classify(c, dev, bidv, bid, size, sizeo);
        if (top < 0) goto done;
    }
    int is_trace = btype == TRACE || top == 2;
    PyObject *live = PG(proc, P_LIVE);
    if (live == NULL) goto done;
    long long devv = PyLong_AsLongLong(dev);
    if (devv == -1 && PyErr_Occurred()) goto done;
    LiveTable *lt = lt_fast(live, devv, bidv, space);
    int had; /* the key was live: the old entry's type is DRAM (old_dram), its size old_size */
    int old_dram = 0;
    PyObject *old_size = NULL; /* borrowed from old, or made below */
    if (lt != NULL) { /* LiveMap's get then set, on the slots */
        int64_t prev_ts;
        uint64_t prev_sb;
        had = lt_put(lt, lt_pack(devv, bidv, space), ts, (uint64_t)size << 8 | (uint64_t)btype, &prev_ts, &prev_sb);
        if (had == -1) goto done;
        if (had == -2) lt = NULL; /* a shape the table has no room for: the generic path below */
        if (had == 1 && (prev_sb & 255) == DRAM) {
            old_dram = 1;
            old = PyLong_FromUnsignedLongLong(prev_sb >> 8);
            if (old == NULL) goto done;
            old_size = old;
        }
    }
    if (lt == NULL) {
        key = PyTuple_Pack(3, dev, bid, small_int[space]);
        if (key == NULL) goto done;
        old = meth1(live, s_get, key);
        if (old == NULL) goto done;
        val = PyTuple_Pack(3, tso, sizeo, bto);
        if (val == NULL || PyObject_SetItem(live, key, val) < 0) goto done;
        had = old != Py_None;
        if (had) {
            if (!PyTuple_Check(old) || PyTuple_GET_SIZE(old) != 3) {
                PyErr_SetString(PyExc_TypeError, "a live entry is not a 3-tuple");
                goto done;
            }
            old_dram = eq(PyTuple_GET_ITEM(old, 2), small_int[DRAM]);
            if (old_dram < 0) goto done;
            old_size = PyTuple_GET_ITEM(old, 1);
        }
    }
    PyObject *dev_live = PG(proc, P_DEV_LIVE);
    if (dev_live == NULL) goto done;
    if (!had) {
        PyObject *n = PyDict_GetItemWithError(dev_live, dev);
        if (n == NULL && PyErr_Occurred()) goto done;
        PyObject *nv = n == NULL ? Py_NewRef(small_int[1]) : PyNumber_Add(n, small_int[1]);
        if (nv == NULL) goto done;
        int r = PyDict_SetItem(dev_live, dev, nv);
        Py_DECREF(nv);
        if (r < 0) goto done;
        if (n == NULL) {
            PyObject *args[1] = {proc};
            if (call0(c, s_width, args, 1) < 0) goto done;
        }
    } else if (old_dram) {
        PyObject *ld = PG(proc, P_LIVE_DRAM);
        if (ld == NULL || PS(proc, P_LIVE_DRAM, PyNumber_Subtract(ld, old_size)) < 0) goto done;
    }
    if (btype == DRAM) {
        PyObject *ld = PG(proc, P_LIVE_DRAM);
        if (ld == NULL || PS(proc, P_LIVE_DRAM, PyNumber_Add(ld, sizeo)) < 0) goto done;
    }
    PyObject *allocs = PG(proc, P_ALLOCS);
    if (allocs == NULL) goto done;
    long long horizon = ts - c->evwin_ns;
    if (Py_TYPE(allocs) == &Stamps_Type && ((Stamps *)allocs)->spill == NULL) { /* the deque's ops, on the ring */
        Stamps *sa = (Stamps *)allocs;
        if (st_append_c(sa, ts) < 0) goto done;
        while (st_at(sa, 0) < horizon) st_drop_first(sa);
    } else {
        if (meth1_0(allocs, s_append, tso) < 0) goto done;
        for (;;) {
            PyObject *first = PySequence_GetItem(allocs, 0);
            long long f;
            if (first == NULL) goto done;
            int r = as_ll(first, &f);
            Py_DECREF(first);
            if (r < 0) goto done;
            if (f >= horizon) break;
            PyObject *x = PyObject_CallMethodNoArgs(allocs, s_popleft);
            if (x == NULL) goto done;
            Py_DECREF(x);
        }
    }
    if (key == NULL && (is_trace || (btype != CB && btype != KERNEL && size > c->io_max)) &&
        (key = PyTuple_Pack(3, dev, bid, small_int[space])) == NULL)
        goto done;
    if (is_trace) {
        PyObject *tk = PG(proc, P_TRACE_KEYS);
        if (tk == NULL || PySet_Add(tk, key) < 0) goto done;
        PyObject *args[5] = {proc, dev, bid, sizeo, tso};
        rc = call0(c, s_on_trace_alloc, args, 5);
        goto done;
    }
    if (btype == CB || btype == KERNEL) {
        if (ps_bool(proc, P_COMPILED_SINCE_BUSY, 1) < 0) goto done;
        if (PG(proc, P_PHASE) == NULL) goto done;
        if (is_phase(proc, PH_WARMUP) && ps_bool(proc, P_COMPILING, 1) < 0) goto done;
        int sigc = btype == CB;
        if (btype == KERNEL) {
            PyObject *name = SLOT(ev, ev_off[E_NAME]);
            /* name in ("Application", "APPLICATION", ""): the event was checked to hold a str */
            sigc = PyUnicode_Compare(name, s_application) == 0 || PyUnicode_Compare(name, s_APPLICATION) == 0 ||
                   PyUnicode_GET_LENGTH(name) == 0;
            if (PyErr_Occurred()) goto done;
        }
        if ((sigc && !is_phase(proc, PH_LOADING)) || btype == CB) {
            if (PS(proc, P_LAST_COMPILE, Py_NewRef(tso)) < 0) goto done;
            if (entry(c, proc, K_COMPILE, tso, tso, NULL, NULL) < 0) goto done;
        }
        rc = 0;
        goto done;
    }
    if (size <= c->io_max) {
        rc = 0;
        goto done;
    }
    long long sigv = size << 8 | btype;
    sig = PyLong_FromLongLong(sigv);
    if (sig == NULL) goto done;
    PyObject *lead = PG(proc, P_LEAD);
    if (lead == NULL) goto done;
    if (lead == Py_None) {
        if (PS(proc, P_LEAD, Py_NewRef(dev)) < 0) goto done;
    }
    PyObject *tail = PG(proc, P_DRAM_TAIL);
    if (tail == NULL) goto done;
    if (tail != Py_None) {
        int same = 0;
        if (btype == DRAM) {
            if (!PyTuple_Check(tail) || PyTuple_GET_SIZE(tail) < 2) {
                PyErr_SetString(PyExc_TypeError, "dram_tail is not a tuple");
                goto done;
            }
            same = eq(bid, PyTuple_GET_ITEM(tail, 1));
            if (same < 0) goto done;
        }
        if (!same && PS(proc, P_DRAM_TAIL, Py_NewRef(Py_None)) < 0) goto done;
    }
    int on_lead = eq(dev, PG(proc, P_LEAD));
    if (on_lead < 0) goto done;
    if (PG(proc, P_PHASE) == NULL) goto done;
    if (top && on_lead && size >= TRACE_MIN && is_phase(proc, PH_WARMUP)) {
        PyObject *tr = PG(proc, P_TRACE);
        int ht = tr ? PyObject_IsTrue(tr) : -1;
        if (ht < 0) goto done;
        if (!ht) {
            long long q;
            if (PS(proc, P_DRAM_TAIL, PyTuple_Pack(2, tso, bid)) < 0 || pg_ll(proc, P_QUIET_AT, &q) < 0) goto done;
            if (ps_ll(proc, P_QUIET_AT, q < ts + c->return_ns ? q : ts + c->return_ns) < 0) goto done;
        }
    }
    if (on_lead) {
        PyObject *seq = PG(proc, P_SEQ);
        if (seq == NULL) goto done;
        PyObject *item = PyTuple_Pack(3, tso, sig, key);
        if (item == NULL) goto done;
        int r = meth1_0(seq, s_append, item);
        Py_DECREF(item);
        if (r < 0) goto done;
    }
    int ph_replay = is_phase(proc, PH_REPLAY), ph_warmup = is_phase(proc, PH_WARMUP);
    int ph_loading = is_phase(proc, PH_LOADING), ph_idle = is_phase(proc, PH_IDLE);
    PyObject *rs = PG(proc, P_REPLAY_SIGS);
    if (rs == NULL) goto done;
    Py_INCREF(rs); /* a callback below may replace the set */
    t = rs;
    if (ph_replay && on_lead) {
        PyObject *last = PG(proc, P_LAST_LEAD);
        if (last == NULL) goto done;
        Py_INCREF(last);
        if (PS(proc, P_LAST_LEAD, PyTuple_Pack(2, sig, tso)) < 0) {
            Py_DECREF(last);
            goto done;
        }
        int learn = 0;
        if (last != Py_None) {
            if (!PyTuple_Check(last) || PyTuple_GET_SIZE(last) < 2) {
                Py_DECREF(last);
                PyErr_SetString(PyExc_TypeError, "last_lead is not a tuple");
                goto done;
            }
            int same = eq(PyTuple_GET_ITEM(last, 0), sig);
            long long lts, learn_until;
            if (same < 0 || as_ll(PyTuple_GET_ITEM(last, 1), &lts) < 0) {
                Py_DECREF(last);
                goto done;
            }
            if (same && ts - lts >= c->iter_ns) {
                Py_ssize_t nrs = PyObject_Size(rs);
                if (nrs < 0 || pg_ll(proc, P_LEARN_UNTIL, &learn_until) < 0) {
                    Py_DECREF(last);
                    goto done;
                }
                learn = nrs < 8 && ts < learn_until;
            }
        }
        Py_DECREF(last);
        if (learn && meth1_0(rs, s_add, sig) < 0) goto done;
    }
    if (ph_replay || ph_warmup) {
        int in_rs = 0;
        if (ph_replay) {
            in_rs = contains(rs, sig);
        } else {
            PyObject *tr = PG(proc, P_TRACE);
            int ht = tr ? PyObject_IsTrue(tr) : -1;
            if (ht < 0) goto done;
            in_rs = ht ? contains(rs, sig) : 0;
        }
        if (in_rs < 0) goto done;
        if (in_rs) {
            rc = entry(c, proc, K_ALLOC, tso, tso, sig, key);
            goto done;
        }
    }
    int was_mid = pg_true(proc, P_MID_OP);
    if (was_mid < 0 || ps_bool(proc, P_MID_OP, 1) < 0) goto done;
    long long temps;
    if (pg_ll(proc, P_TEMPS, &temps) < 0) goto done;
    if (ps_ll(proc, P_TEMPS, temps + 1) < 0) goto done;
    if (busy(c, proc, ts, was_mid, temps == 0) < 0) goto done;
    if ((ph_loading || ph_replay || ph_idle) && btype != DRAM) {
        PyObject *rs2 = PG(proc, P_REPLAY_SIGS);
        int in_rs = rs2 ? contains(rs2, sig) : -1;
        if (in_rs < 0) goto done;
        if (!in_rs) {
            long long q;
            if (PS(proc, P_PENDING_L1, PyTuple_Pack(2, tso, key)) < 0 || pg_ll(proc, P_QUIET_AT, &q) < 0) goto done;
            if (ps_ll(proc, P_QUIET_AT, q < ts + c->hold_ns ? q : ts + c->hold_ns) < 0) goto done;
        }
    }
    rc = entry(c, proc, btype == DRAM && size >= c->load_min ? K_BIG : K_ALLOC, tso, tso, sig, key);
done:
    Py_XDECREF(t);
    Py_XDECREF(sig);
    Py_XDECREF(val);
    Py_XDECREF(old);
    Py_XDECREF(key);
    return rc;
}

/* EventRules._drop: 0 nothing live under the key, 1 dropped (*born, *size, *btype of the entry, *borno its
 * timestamp as an int (new ref), *got the entry when it came from a generic map (new ref, else NULL), *was_trace) */
typedef struct {
    long long born, size, btype;
    PyObject *borno, *got;
    int was_trace;
} Dropped;

static int drop(Ctx *c, PyObject *proc, PyObject *dev, PyObject *bid, int space, Dropped *out) {
    PyObject *key = NULL;
    int rc = -1;
    out->borno = out->got = NULL;
    out->was_trace = 0;
    PyObject *live = PG(proc, P_LIVE);
    if (live == NULL) return -1;
    long long devv = PyLong_AsLongLong(dev), bidv = PyLong_AsLongLong(bid);
    if (PyErr_Occurred()) return -1;
    LiveTable *lt = lt_fast(live, devv, bidv, space);
    int is_dram;
    PyObject *sizeo = NULL; /* the entry's size as an int, for live_dram (borrowed or owned below) */
    PyObject *own = NULL;
    if (lt != NULL) {
        Py_ssize_t i = lt_find(lt, lt_pack(devv, bidv, space));
        if (i < 0) return 0;
        lt_slot e = lt->s[i];
        uint64_t sb = lt_sb(lt, &e);
        lt_remove_at(lt, i);
        out->born = e.ts;
        out->size = (long long)(sb >> 8);
        out->btype = (long long)(sb & 255);
        out->borno = PyLong_FromLongLong(e.ts);
        if (out->borno == NULL) return -1;
        is_dram = out->btype == DRAM;
        if (is_dram && (sizeo = own = PyLong_FromLongLong(out->size)) == NULL) goto fail;
    } else {
        key = PyTuple_Pack(3, dev, bid, small_int[space]);
        if (key == NULL) return -1;
        PyObject *g = meth2(live, s_pop, key, Py_None);
        if (g == NULL) goto done;
        if (g == Py_None) {
            Py_DECREF(g);
            rc = 0;
            goto done;
        }
        if (!PyTuple_Check(g) || PyTuple_GET_SIZE(g) != 3) {
            Py_DECREF(g);
            PyErr_SetString(PyExc_TypeError, "a live entry is not a 3-tuple");
            goto done;
        }
        out->got = g;
        out->borno = Py_NewRef(PyTuple_GET_ITEM(g, 0));
        is_dram = eq(PyTuple_GET_ITEM(g, 2), small_int[DRAM]);
        if (is_dram < 0) goto fail;
        sizeo = PyTuple_GET_ITEM(g, 1);
    }
    if (is_dram) {
        PyObject *ld = PG(proc, P_LIVE_DRAM);
        if (ld == NULL || PS(proc, P_LIVE_DRAM, PyNumber_Subtract(ld, sizeo)) < 0) goto fail;
    }
    PyObject *tk = PG(proc, P_TRACE_KEYS);
    if (tk == NULL) goto fail;
    int wt = 0;
    if (!PyAnySet_CheckExact(tk) || PySet_GET_SIZE(tk) > 0) { /* key in proc.trace_keys */
        if (key == NULL && (key = PyTuple_Pack(3, dev, bid, small_int[space])) == NULL) goto fail;
        wt = PySequence_Contains(tk, key);
        if (wt < 0) goto fail;
    }
    out->was_trace = wt;
    if (wt) {
        if (meth1_0(tk, s_discard, key) < 0) goto fail;
        PyObject *tr = PG(proc, P_TRACE);
        PyObject *tkey = PyTuple_Pack(2, dev, bid);
        if (tr == NULL || tkey == NULL) {
            Py_XDECREF(tkey);
            goto fail;
        }
        PyObject *x = meth2(tr, s_pop, tkey, Py_None);
        Py_DECREF(tkey);
        if (x == NULL) goto fail;
        Py_DECREF(x);
    }
    PyObject *dev_live = PG(proc, P_DEV_LIVE);
    if (dev_live == NULL) goto fail;
    PyObject *n = PyObject_GetItem(dev_live, dev);
    if (n == NULL) goto fail;
    PyObject *nv = PyNumber_Subtract(n, small_int[1]);
    Py_DECREF(n);
    if (nv == NULL) goto fail;
    int nz = PyObject_IsTrue(nv);
    int r = nz < 0 ? -1 : nz ? PyObject_SetItem(dev_live, dev, nv) : PyObject_DelItem(dev_live, dev);
    Py_DECREF(nv);
    if (r < 0) goto fail;
    if (!nz) {
        PyObject *args[1] = {proc};
        if (call0(c, s_width, args, 1) < 0) goto fail;
    }
    rc = 1;
    goto done;
fail:
    Py_CLEAR(out->got);
    Py_CLEAR(out->borno);
done:
    Py_XDECREF(own);
    Py_XDECREF(key);
    return rc;
}

/* EventRules._on_free */
static int on_free(Ctx *c, PyObject *proc, PyObject *ev, long long ts, PyObject *tso) {
    PyObject *dev = SLOT(ev, ev_off[E_DEV]), *bid = SLOT(ev, ev_off[E_BID]);
    long btype_ev = PyLong_AsLong(SLOT(ev, ev_off[E_BT]));
    int space = btype_ev == CB ? 1 : btype_ev == KERNEL ? 2 : 0;
    PyObject *sig = NULL;
    int rc = -1;
    Dropped g = {0};
    int r = drop(c, proc, dev, bid, space, &g);
    if (r <= 0) return r;
    PyObject *borno = g.borno;
    long long born = g.born, size = g.size, btype = g.btype;
    if (g.was_trace) {
        PyObject *args[3] = {proc, tso, borno};
        if (call0(c, s_on_trace_free, args, 3) < 0) goto done;
    } else {
        if (g.got != NULL && (as_ll(borno, &born) < 0 || as_ll(PyTuple_GET_ITEM(g.got, 1), &size) < 0 ||
                              as_ll(PyTuple_GET_ITEM(g.got, 2), &btype) < 0))
            goto done;
        if (size > c->io_max && btype != CB && btype != KERNEL) {
            long long age = ts - born;
            if (size < SIZE_LIM && btype >= 0 && btype < 256) {
                sig = PyLong_FromLongLong(size << 8 | btype);
            } else if (g.got == NULL) { /* a LiveTable holds sizes below 2^56 */
                sig = PyLong_FromUnsignedLongLong((unsigned long long)size << 8 | (unsigned long long)btype);
            } else { /* a size only the Python path stored: the same int, computed as Python does */
                PyObject *eight = PyLong_FromLong(8);
                PyObject *sh = eight ? PyNumber_Lshift(PyTuple_GET_ITEM(g.got, 1), eight) : NULL;
                Py_XDECREF(eight);
                sig = sh ? PyNumber_Or(sh, PyTuple_GET_ITEM(g.got, 2)) : NULL;
                Py_XDECREF(sh);
            }
            if (sig == NULL) goto done;
            if (PG(proc, P_PHASE) == NULL) goto done;
            int own_io = 0;
            if (is_phase(proc, PH_REPLAY) || is_phase(proc, PH_WARMUP)) {
                int ok = is_phase(proc, PH_REPLAY);
                if (!ok) {
                    PyObject *tr = PG(proc, P_TRACE);
                    ok = tr ? PyObject_IsTrue(tr) : -1;
                    if (ok < 0) goto done;
                }
                if (ok) {
                    PyObject *rs = PG(proc, P_REPLAY_SIGS);
                    own_io = rs ? contains(rs, sig) : -1;
                    if (own_io < 0) goto done;
                }
            }
            if (own_io) {
                if (entry(c, proc, K_FREE, tso, tso, NULL, NULL) < 0) goto done;
            } else {
                int was_mid = pg_true(proc, P_MID_OP);
                long long temps, since, loaded_until;
                if (was_mid < 0 || ps_bool(proc, P_MID_OP, 0) < 0) goto done;
                if (pg_ll(proc, P_TEMPS, &temps) < 0 || pg_ll(proc, P_SINCE, &since) < 0) goto done;
                int boundary = temps == 0;
                if (born >= since && temps && ps_ll(proc, P_TEMPS, temps - 1) < 0) goto done;
                if (busy(c, proc, ts, was_mid, boundary) < 0) goto done;
                if (pg_ll(proc, P_LOADED_UNTIL, &loaded_until) < 0 || PG(proc, P_PHASE) == NULL) goto done;
                if (born <= loaded_until && !is_phase(proc, PH_LOADING))
                    r = entry(c, proc, K_LONG, tso, tso, NULL, NULL);
                else if (age < c->young_ns)
                    r = entry(c, proc, K_CHURN, tso, borno, NULL, sig);
                else if (age >= c->long_ns)
                    r = entry(c, proc, K_LONG, tso, tso, NULL, NULL);
                else
                    r = entry(c, proc, K_FREE, tso, tso, NULL, NULL);
                if (r < 0) goto done;
            }
        }
    }
    if (PG(proc, P_PHASE) == NULL) goto done;
    if (is_phase(proc, PH_TEARDOWN) || is_phase(proc, PH_RELEASED)) {
        PyObject *live = PG(proc, P_LIVE);
        int any = live ? lm_bool(live) : -1;
        if (any < 0) goto done;
        if (!any) {
            PyObject *args[3] = {proc, phase_obj[PH_EXITED], tso};
            if (call0(c, s_enter, args, 3) < 0) goto done;
        }
    }
    rc = 0;
done:
    Py_XDECREF(sig);
    Py_XDECREF(g.got);
    Py_XDECREF(g.borno);
    return rc;
}

/* An event the compiled path takes: an Event of kind ALLOC or FREE whose fields are ints in range. */
static int takes(PyObject *ev) {
    if (Py_TYPE(ev) != event_type) return 0;
    PyObject *kind = SLOT(ev, ev_off[E_KIND]);
    if (kind != kind_alloc && kind != kind_free) return 0;
    return 1;
}
/* 1 in range, 0 not (the tracker goes Python-only), -1 error */
static int in_range(PyObject *ev) {
    PyObject *f[5] = {SLOT(ev, ev_off[E_TS]), SLOT(ev, ev_off[E_DEV]), SLOT(ev, ev_off[E_BT]),
                      SLOT(ev, ev_off[E_BID]), SLOT(ev, ev_off[E_SIZE])};
    for (int i = 0; i < 5; i++)
        if (f[i] == NULL || !PyLong_CheckExact(f[i])) return 0;
    if (SLOT(ev, ev_off[E_PID]) == NULL || SLOT(ev, ev_off[E_NAME]) == NULL) return 0;
    int o = 0;
    long long ts = PyLong_AsLongLongAndOverflow(f[0], &o);
    if (o || ts > TS_LIM || ts < -TS_LIM) return 0;
    long long dev = PyLong_AsLongLongAndOverflow(f[1], &o);
    if (o || dev < INT32_MIN || dev > INT32_MAX) return 0;
    long long bt = PyLong_AsLongLongAndOverflow(f[2], &o);
    if (o || bt < 0 || bt > 255) return 0;
    long long bid = PyLong_AsLongLongAndOverflow(f[3], &o);
    if (o || bid < 0 || bid >= BID_LIM) return 0;
    long long size = PyLong_AsLongLongAndOverflow(f[4], &o);
    if (o || size < 0 || size >= SIZE_LIM) return 0;
    if (bt == KERNEL && !PyUnicode_CheckExact(SLOT(ev, ev_off[E_NAME]))) return 0;
    if (PyErr_Occurred()) return -1;
    return 1;
}

/* PhaseTracker.observe, compiled, for an event ``takes`` accepted */
/* Deadlines._check_quiet(proc, now) where it can change nothing but the pending activation and quiet_at
 * (a loading, replaying or idle process whose latest activation is still held, or was freed: every
 * event of a load of L1 buffers after the hold passed). 1 done here, 0 the Python reference must run
 * it (it may change the phase; or a map or value this does not read), -1 error. */
static int check_quiet_c(Ctx *c, PyObject *proc, long long now) {
    if (PG(proc, P_PHASE) == NULL) return -1;
    int loading = is_phase(proc, PH_LOADING), replay = is_phase(proc, PH_REPLAY), idle = is_phase(proc, PH_IDLE);
    if (!(loading || replay || idle || is_phase(proc, PH_RELEASED) || is_phase(proc, PH_TEARDOWN) ||
          is_phase(proc, PH_EXITED)))
        return 0; /* warm-up, capture: their time rules are Python's */
    long long last_busy;
    if (pg_ll(proc, P_LAST_BUSY, &last_busy) < 0) return -1;
    if (loading && now - last_busy >= c->idle_ns) return 0; /* idle (or replay): a transition */
    PyObject *pending = PG(proc, P_PENDING_L1);
    if (pending == NULL) return -1;
    if (pending == Py_None || !(loading || replay || idle)) return 1; /* nothing else applies */
    if (!PyTuple_CheckExact(pending) || PyTuple_GET_SIZE(pending) != 2 || !PyLong_CheckExact(PyTuple_GET_ITEM(pending, 0)))
        return 0;
    long long at;
    if (as_ll(PyTuple_GET_ITEM(pending, 0), &at) < 0) return -1;
    PyObject *live = PG(proc, P_LIVE);
    if (live == NULL) return -1;
    if (Py_TYPE(live) != &LiveTable_Type || lt_extra_any((LiveTable *)live)) return 0;
    uint64_t k;
    int p = lt_key_of(PyTuple_GET_ITEM(pending, 1), &k);
    if (p < 0) return -1;
    Py_ssize_t i = p ? lt_find((LiveTable *)live, k) : -1;
    if (i < 0 || ((LiveTable *)live)->s[i].ts != at) /* freed (or replaced) since */
        return PS(proc, P_PENDING_L1, Py_NewRef(Py_None)) < 0 ? -1 : 1;
    if (now - at >= c->hold_ns && last_busy - at <= 2000000) return 0; /* the first op compiling: warm-up */
    if (last_busy - at > 2000000) /* the stream went on: not a compile pause */
        return PS(proc, P_PENDING_L1, Py_NewRef(Py_None)) < 0 ? -1 : 1;
    long long q;
    if (pg_ll(proc, P_QUIET_AT, &q) < 0) return -1;
    return ps_ll(proc, P_QUIET_AT, q < at + c->hold_ns ? q : at + c->hold_ns) < 0 ? -1 : 1;
}

static int observe_c(Ctx *c, PyObject *ev) {
    PyObject *tso = SLOT(ev, ev_off[E_TS]);
    long long ts = PyLong_AsLongLong(tso);
    if (ts > c->now) {
        c->now = ts;
        c->now_dirty = 1;
    }
    PyObject *pid = SLOT(ev, ev_off[E_PID]);
    int alloc = SLOT(ev, ev_off[E_KIND]) == kind_alloc;
    PyObject *proc = PyDict_GetItemWithError(c->procs, pid);
    if (proc == NULL && PyErr_Occurred()) return -1;
    if (proc != NULL && Py_TYPE(proc) != proc_type) {
        PyErr_SetString(PyExc_TypeError, "phases: a tracked process is not a Proc");
        return -1;
    }
    if (proc != NULL && PG(proc, P_PHASE) == NULL) return -1;
    if (proc == NULL || (alloc && is_phase(proc, PH_EXITED))) {
        PyObject *args[3] = {pid, tso, phase_obj[alloc ? PH_LOADING : PH_IDLE]};
        proc = call(c, s_new_proc, args, 3);
        if (proc == NULL) return -1;
        if (Py_TYPE(proc) != proc_type) {
            Py_DECREF(proc);
            PyErr_SetString(PyExc_TypeError, "phases: _new_proc did not return a Proc");
            return -1;
        }
    } else {
        Py_INCREF(proc);
        long long quiet_at;
        if (pg_ll(proc, P_QUIET_AT, &quiet_at) < 0) goto fail;
        if (ts >= quiet_at) {
            int r = check_quiet_c(c, proc, ts);
            if (r < 0) goto fail;
            PyObject *args[2] = {proc, tso};
            if (r == 0 && call0(c, s_check_quiet, args, 2) < 0) goto fail;
        }
    }
    PyObject *recent = PG(proc, P_RECENT), *segd = PG(proc, P_SEG_DEVICES);
    if (recent == NULL || segd == NULL) goto fail;
    if (Py_TYPE(recent) == &Stamps_Type && ((Stamps *)recent)->spill == NULL) {
        if (st_append_c((Stamps *)recent, ts) < 0) goto fail;
    } else if (meth1_0(recent, s_append, tso) < 0) {
        goto fail;
    }
    if (PySet_Check(segd) ? PySet_Add(segd, SLOT(ev, ev_off[E_DEV])) < 0
                          : meth1_0(segd, s_add, SLOT(ev, ev_off[E_DEV])) < 0)
        goto fail;
    if ((alloc ? on_alloc(c, proc, ev, ts, tso) : on_free(c, proc, ev, ts, tso)) < 0) goto fail;
    Py_DECREF(proc);
    return 0;
fail:
    Py_DECREF(proc);
    return -1;
}

/* the live view's phase of ``pid`` (PhaseTracker._shown), new ref */
static PyObject *shown(Ctx *c, PyObject *pid) {
    PyObject *proc = PyDict_GetItemWithError(c->procs, pid);
    if (proc == NULL) return PyErr_Occurred() ? NULL : Py_NewRef(phase_obj[PH_IDLE]);
    if (Py_TYPE(proc) != proc_type) {
        PyErr_SetString(PyExc_TypeError, "phases: a tracked process is not a Proc");
        return NULL;
    }
    long long show_at, hold_until;
    if (pg_ll(proc, P_SHOW_AT, &show_at) < 0) return NULL;
    if (c->now >= show_at) return Py_NewRef(phase_obj[PH_IDLE]);
    if (pg_ll(proc, P_HOLD_UNTIL, &hold_until) < 0) return NULL;
    PyObject *p = PG(proc, c->now < hold_until ? P_PREV_PHASE : P_PHASE);
    return p == NULL ? NULL : Py_NewRef(p);
}

static int set_python_only(PyObject *tracker) { return PyObject_SetAttr(tracker, s_python_only, Py_True); }

static PyObject *observe_batch(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "observe_batch(tracker, events)");
        return NULL;
    }
    if (!ready) {
        PyErr_SetString(PyExc_RuntimeError, "phases.setup() was not called");
        return NULL;
    }
    Ctx c;
    memset(&c, 0, sizeof c);
    c.tracker = args[0];
    PyObject *seq = PySequence_Fast(args[1], "events must be a sequence");
    if (seq == NULL) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject *out = PyList_New(n);
    PyObject *procs = NULL, *po = NULL;
    int python_only = 0;
    if (out == NULL) goto fail;
    procs = PyObject_GetAttr(c.tracker, s_procs);
    if (procs == NULL) goto fail;
    if (!PyDict_CheckExact(procs)) {
        PyErr_SetString(PyExc_TypeError, "tracker._procs is not a dict");
        goto fail;
    }
    c.procs = procs;
    c.topdown = PyObject_GetAttr(c.tracker, s_topdown);
    if (c.topdown == NULL) goto fail;
    po = PyObject_GetAttr(c.tracker, s_python_only);
    if (po == NULL) goto fail;
    python_only = PyObject_IsTrue(po);
    if (python_only < 0) goto fail;
    if (Py_TYPE(c.topdown) != td_type) python_only = 1;
    int ok = 1;
    struct {
        PyObject *name;
        long long *dst;
    } durs[] = {{s_io_max, &c.io_max},     {s_young_ns, &c.young_ns},   {s_long_ns, &c.long_ns},
                {s_idle_ns, &c.idle_ns},   {s_show_ns, &c.show_ns},     {s_return_ns, &c.return_ns},
                {s_settle_ns, &c.settle_ns}, {s_hold_ns, &c.hold_ns},   {s_iter_ns, &c.iter_ns},
                {s_evwin_ns, &c.evwin_ns}};
    for (size_t i = 0; i < sizeof durs / sizeof durs[0]; i++)
        if (read_dur(c.tracker, durs[i].name, durs[i].dst, &ok) < 0) goto fail;
    PyObject *cfg = PyObject_GetAttr(c.tracker, s_config);
    if (cfg == NULL) goto fail;
    PyObject *lmb = PyObject_GetAttr(cfg, s_load_min_bytes);
    Py_DECREF(cfg);
    if (lmb == NULL) goto fail;
    {
        int o = 0;
        c.load_min = PyLong_CheckExact(lmb) ? PyLong_AsLongLongAndOverflow(lmb, &o) : (o = 1, 0);
        Py_DECREF(lmb);
        if (PyErr_Occurred()) goto fail;
        if (o) ok = 0;
    }
    c.pause_factor = PyObject_GetAttr(c.tracker, s_pause_factor);
    if (c.pause_factor == NULL) goto fail;
    if (!PyFloat_CheckExact(c.pause_factor) && !PyLong_CheckExact(c.pause_factor)) ok = 0;
    int r = sync_in(&c);
    if (r < 0) goto fail;
    if (!r || !ok) python_only = 1;
    if (python_only && !PyObject_IsTrue(po) && set_python_only(c.tracker) < 0) goto fail;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *ev = PySequence_Fast_GET_ITEM(seq, i);
        PyObject *pid;
        if (!python_only && takes(ev)) {
            int rr = in_range(ev);
            if (rr < 0) goto fail;
            if (!rr) {
                python_only = 1;
                if (set_python_only(c.tracker) < 0) goto fail;
            }
        }
        if (!python_only && takes(ev)) {
            if (observe_c(&c, ev) < 0) goto fail;
            pid = SLOT(ev, ev_off[E_PID]);
            Py_INCREF(pid);
        } else {
            PyObject *a[1] = {ev};
            if (call0(&c, s_observe, a, 1) < 0) goto fail;
            if (!python_only) {
                /* observe() may have seen something out of range: it says so in the flag */
                PyObject *f = PyObject_GetAttr(c.tracker, s_python_only);
                if (f == NULL) goto fail;
                python_only = PyObject_IsTrue(f);
                Py_DECREF(f);
                if (python_only < 0) goto fail;
            }
            pid = PyObject_GetAttrString(ev, "pid");
            if (pid == NULL) goto fail;
        }
        PyObject *ph;
        if (python_only) { /* the reference's phase(), whatever the integers */
            PyObject *stack[2] = {c.tracker, pid};
            PyObject *name = PyUnicode_FromString("phase");
            ph = name ? PyObject_VectorcallMethod(name, stack, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL) : NULL;
            Py_XDECREF(name);
        } else {
            ph = shown(&c, pid);
        }
        Py_DECREF(pid);
        if (ph == NULL) goto fail;
        PyList_SET_ITEM(out, i, ph);
    }
    if (!python_only && sync_out(&c) < 0) goto fail;
    Py_DECREF(seq);
    Py_XDECREF(procs);
    Py_XDECREF(c.topdown);
    Py_XDECREF(c.pause_factor);
    Py_XDECREF(po);
    return out;
fail:
    if (!python_only) {
        PyObject *et, *evv, *tb;
        PyErr_Fetch(&et, &evv, &tb);
        sync_out(&c);
        PyErr_Restore(et, evv, tb);
    }
    Py_DECREF(seq);
    Py_XDECREF(out);
    Py_XDECREF(procs);
    Py_XDECREF(c.topdown);
    Py_XDECREF(c.pause_factor);
    Py_XDECREF(po);
    return NULL;
}

static PyMethodDef methods[] = {
    {"setup", setup, METH_VARARGS, "setup(Proc, Window, TopDown, Event, phases, alloc_kind, free_kind)"},
    {"observe_batch", (PyCFunction)(void (*)(void))observe_batch, METH_FASTCALL,
     "observe_batch(tracker, events) -> the live phase of each event's process right after it"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moddef = {PyModuleDef_HEAD_INIT, "tt_memtop._native.phases",
                                    "The phase tracker's per-event path, compiled (see phases.c).", -1, methods};

#define INTERN(var, text)                                                                                        \
    do {                                                                                                          \
        if ((var = PyUnicode_InternFromString(text)) == NULL) return NULL;                                        \
    } while (0)

PyMODINIT_FUNC PyInit_phases(void) {
    for (int i = 0; i < 6; i++)
        if ((small_int[i] = PyLong_FromLong(i)) == NULL) return NULL;
    INTERN(s_observe, "observe");
    INTERN(s_new_proc, "_new_proc");
    INTERN(s_check_quiet, "_check_quiet");
    INTERN(s_width, "_width");
    INTERN(s_on_trace_alloc, "_on_trace_alloc");
    INTERN(s_on_trace_free, "_on_trace_free");
    INTERN(s_rules, "_rules");
    INTERN(s_enter, "_enter");
    INTERN(s_get, "get");
    INTERN(s_pop, "pop");
    INTERN(s_append, "append");
    INTERN(s_popleft, "popleft");
    INTERN(s_add, "add");
    INTERN(s_discard, "discard");
    INTERN(s_now, "_now");
    INTERN(s_procs, "_procs");
    INTERN(s_python_only, "_python_only");
    INTERN(s_topdown, "_topdown");
    INTERN(s_config, "config");
    INTERN(s_load_min_bytes, "load_min_bytes");
    INTERN(s_io_max, "_io_max");
    INTERN(s_young_ns, "_young_ns");
    INTERN(s_long_ns, "_long_ns");
    INTERN(s_idle_ns, "_idle_ns");
    INTERN(s_show_ns, "_show_ns");
    INTERN(s_return_ns, "_return_ns");
    INTERN(s_settle_ns, "_settle_ns");
    INTERN(s_hold_ns, "_hold_ns");
    INTERN(s_iter_ns, "_iter_ns");
    INTERN(s_evwin_ns, "_evwin_ns");
    INTERN(s_pause_factor, "_pause_factor");
    INTERN(s_application, "Application");
    INTERN(s_APPLICATION, "APPLICATION");
    INTERN(s_empty, "");
    if (PyType_Ready(&LiveTable_Type) < 0 || PyType_Ready(&Stamps_Type) < 0) return NULL;
    PyObject *m = PyModule_Create(&moddef);
    if (m == NULL) return NULL;
    if (PyModule_AddObjectRef(m, "LiveTable", (PyObject *)&LiveTable_Type) < 0 ||
        PyModule_AddObjectRef(m, "Stamps", (PyObject *)&Stamps_Type) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
