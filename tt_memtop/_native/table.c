/* The registry's storage in columns: one fixed-size row per live entry, an open-addressing hash
 * index keyed by (id space, device, buffer_id), and an owner index (a doubly linked list of rows per
 * owner PID, in insertion order).
 *
 * Behaviour is defined by the pure-Python twin, tt_memtop/core/table.py (PyTable); both are tested
 * by one suite. Rows are appended; a removed row leaves a hole, and holes are squeezed out (order
 * kept) once they outnumber the live rows. A row's slot number is therefore only valid until the
 * next add() or remove(). No Python object is kept per entry: about 56 bytes of row + 8 of index.
 *
 * No single call does O(N) work (a producer waits on the thread that calls us):
 * - Compaction is incremental: a cursor (crd) walks the rows from the lowest hole on and moves each
 *   live row down to cwr, COMPACT_STEP slots per add()/remove(); [0, cwr) is done, [cwr, crd) is
 *   holes, [crd, nrows) not yet visited. A moved row's index entry and owner-list neighbours are
 *   fixed as it moves. It pauses while a frozen view is open (rows must stay where they are).
 * - The hash index grows incrementally: on doubling, the old array is kept and HASH_STEP of its
 *   buckets are moved to the new one per add()/remove(); lookups look in both meanwhile (moved
 *   entries leave a tombstone in the old array so its probe chains stay whole). The old array is
 *   fully drained long before the next doubling (2 buckets per insert would do).
 *
 * Besides the methods: pools() (what a peak capture needs, one pass over the rows) and a C API for
 * mirror.c in the capsule `api` (find / get / add / remove / set_refs on C values).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "table_api.h"

#define NIL 0xFFFFFFFFu
#define F_ALIVE 1u
#define F_STRINGS 2u
#define BUFFER_SIZE 49 /* eventcodec.BUFFER: <iQBQiIqQHH */
#define MIN_COMPACT 1024u
#define TOMB 0xFFFFFFFFu      /* an entry of the old hash array already moved to the new one */
#define COMPACT_STEP 32u      /* slots the compaction cursor visits per add()/remove() (same in table.py) */
#define HASH_STEP 32u         /* old hash buckets migrated per add()/remove() */

typedef struct {
    uint64_t bid, size, seq;
    int64_t ts;
    int32_t device, pid;
    uint32_t refs, onext, oprev;
    uint8_t type, flags;
} Row;

typedef struct {
    int32_t pid;
    uint32_t head, tail, count;
} Owner;

typedef struct {
    PyObject_HEAD
    Row *rows;
    uint32_t nrows, caprows, live;
    uint32_t *hash; /* slot + 1; 0 = empty. NULL in a copy */
    uint32_t hcap;  /* power of two */
    Owner *owners;
    uint32_t nowners, capowners, freeowner; /* free list threaded through .head */
    PyObject *owner_ix;                     /* dict pid -> owner index; NULL in a copy */
    uint32_t last_owner;                    /* the owner index last looked up (a live one), NIL: none */
    uint32_t frozen;                        /* open Frozen views: rows stay where they are */
    uint32_t *ohash;                        /* the previous hash array while it is drained, else NULL */
    uint32_t ohcap, omig;                   /* its size; buckets [0, omig) are moved already */
    uint32_t compacting, cwr, crd;          /* compaction cursor (see the top of the file) */
    uint32_t hole_lo;                       /* lowest hole outside a running compaction's reach; NIL: none */
    /* work bounds, for tests (stats()): most slots visited / rows moved / old buckets migrated by one call */
    uint32_t max_scanned, max_moved, max_migrated;
    uint64_t ncompactions, ngrowths;
    uint32_t min_compact, compact_step, hash_step; /* MIN_COMPACT, COMPACT_STEP, HASH_STEP unless tune()d */
    struct FrozenS *views;                         /* the open Frozen views (a list through .next) */
} Table;

/* A view of the rows as of a freeze. Rows below nrows keep every field but flags and refs while it
 * is open; the table saves those of a row into every open view (save_for_views) before it changes
 * them, so a freeze copies nothing: `saved` marks the rows whose flags[] / refs[] hold the old
 * values (all three arrays are calloc'd: pages the OS zeroes when first touched). */
typedef struct FrozenS {
    PyObject_HEAD
    Table *t; /* NULL once closed */
    uint32_t nrows, live;
    uint64_t *saved; /* bit per row below nrows */
    uint8_t *flags;
    uint32_t *refs;
    struct FrozenS *next, *prev; /* in t->views */
} Frozen;

/* Before the flags or ref count of the row at `slot` change: keep them for every view that sees it. */
static void save_for_views(Table *t, uint32_t slot) {
    for (Frozen *f = t->views; f != NULL; f = f->next) {
        if (slot >= f->nrows || (f->saved[slot >> 6] >> (slot & 63) & 1u)) continue;
        f->flags[slot] = t->rows[slot].flags;
        f->refs[slot] = t->rows[slot].refs;
        f->saved[slot >> 6] |= (uint64_t)1 << (slot & 63);
    }
}

static PyTypeObject FrozenType;

static PyTypeObject TableType;

static inline unsigned space_of(uint8_t type) { return type == 5 ? 1u : type == 6 ? 2u : 0u; }

static inline uint32_t hash_key(unsigned space, int32_t device, uint64_t bid, uint32_t mask) {
    uint64_t h = bid * 0x9E3779B97F4A7C15ull;
    h ^= ((uint64_t)(uint32_t)device << 2 | space) * 0xC2B2AE3D27D4EB4Full;
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 32;
    return (uint32_t)h & mask;
}

/* ------------------------------------------------------------------ argument conversion */
static int get_u64(PyObject *o, uint64_t *out) {
    if (!PyLong_Check(o)) {
        PyErr_SetString(PyExc_TypeError, "an int is required");
        return -1;
    }
    unsigned long long v = PyLong_AsUnsignedLongLong(o);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) return -1;
    *out = v;
    return 0;
}

static int get_i64(PyObject *o, int64_t *out) {
    if (!PyLong_Check(o)) {
        PyErr_SetString(PyExc_TypeError, "an int is required");
        return -1;
    }
    long long v = PyLong_AsLongLong(o);
    if (v == -1 && PyErr_Occurred()) return -1;
    *out = v;
    return 0;
}

static int get_i32(PyObject *o, int32_t *out) {
    int64_t v;
    if (get_i64(o, &v) < 0) return -1;
    if (v < INT32_MIN || v > INT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "value out of int32 range");
        return -1;
    }
    *out = (int32_t)v;
    return 0;
}

static int get_u32(PyObject *o, uint32_t *out) {
    uint64_t v;
    if (get_u64(o, &v) < 0) return -1;
    if (v > UINT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "value out of uint32 range");
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

static int get_u8(PyObject *o, uint8_t *out) {
    uint64_t v;
    if (get_u64(o, &v) < 0) return -1;
    if (v > 255) {
        PyErr_SetString(PyExc_OverflowError, "value out of uint8 range");
        return -1;
    }
    *out = (uint8_t)v;
    return 0;
}

/* A key argument triple; 1 = representable, 0 = cannot be in the table (no error), -1 = error. */
static int get_key(PyObject *const *args, unsigned *space, int32_t *device, uint64_t *bid) {
    int64_t s, d;
    if (get_i64(args[0], &s) < 0 || get_i64(args[1], &d) < 0) return -1;
    if (!PyLong_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "an int is required");
        return -1;
    }
    if (s < 0 || s > 2 || d < INT32_MIN || d > INT32_MAX) return 0;
    int overflow = 0;
    long long sv = PyLong_AsLongLongAndOverflow(args[2], &overflow);
    if (sv == -1 && PyErr_Occurred()) return -1;
    if (overflow < 0 || (!overflow && sv < 0)) return 0;
    if (overflow > 0) {
        unsigned long long v = PyLong_AsUnsignedLongLong(args[2]);
        if (v == (unsigned long long)-1 && PyErr_Occurred()) {
            PyErr_Clear();
            return 0;
        }
        *bid = v;
    } else {
        *bid = (uint64_t)sv;
    }
    *space = (unsigned)s;
    *device = (int32_t)d;
    return 1;
}

static Table *need_index(Table *t) {
    if (t->hash == NULL) {
        PyErr_SetString(PyExc_TypeError, "a copy of a table has no index");
        return NULL;
    }
    return t;
}

static int check_slot(Table *t, PyObject *o, uint32_t *slot) {
    Py_ssize_t s = PyLong_AsSsize_t(o);
    if (s == -1 && PyErr_Occurred()) return -1;
    if (s < 0 || (uint64_t)s >= t->nrows || !(t->rows[s].flags & F_ALIVE)) {
        PyErr_Format(PyExc_IndexError, "no live row at slot %zd", s);
        return -1;
    }
    *slot = (uint32_t)s;
    return 0;
}

/* ------------------------------------------------------------------ index */
/* Probe one hash array for a key: its slot, or -1 with *pos at the first empty bucket. */
static int64_t probe(const Table *t, const uint32_t *h, uint32_t cap, unsigned space, int32_t device, uint64_t bid,
                     uint32_t *pos) {
    uint32_t mask = cap - 1, i = hash_key(space, device, bid, mask);
    for (;;) {
        uint32_t e = h[i];
        if (e == 0) {
            *pos = i;
            return -1;
        }
        if (e != TOMB) {
            const Row *r = &t->rows[e - 1];
            if (r->bid == bid && r->device == device && space_of(r->type) == space) {
                *pos = i;
                return (int64_t)(e - 1);
            }
        }
        i = (i + 1) & mask;
    }
}

/* The slot of a key (-1: none) and where its index entry is: bucket *pos of the new array, or of the
 * old one when *in_old. When absent, *pos is the new array's bucket to insert it at. */
static int64_t find_pos2(const Table *t, unsigned space, int32_t device, uint64_t bid, uint32_t *pos, int *in_old) {
    int64_t s = probe(t, t->hash, t->hcap, space, device, bid, pos);
    *in_old = 0;
    if (s >= 0 || t->ohash == NULL) return s;
    uint32_t opos;
    int64_t o = probe(t, t->ohash, t->ohcap, space, device, bid, &opos);
    if (o >= 0) {
        *pos = opos;
        *in_old = 1;
    }
    return o;
}

static int64_t find_pos(const Table *t, unsigned space, int32_t device, uint64_t bid, uint32_t *pos) {
    int in_old;
    return find_pos2(t, space, device, bid, pos, &in_old);
}

static void hash_put_new(Table *t, uint32_t e) {
    const Row *r = &t->rows[e - 1];
    uint32_t mask = t->hcap - 1, i = hash_key(space_of(r->type), r->device, r->bid, mask);
    while (t->hash[i]) i = (i + 1) & mask;
    t->hash[i] = e;
}

/* Move up to `budget` buckets of the old hash array into the new one; free it once drained. */
static void migrate_step(Table *t, uint32_t budget) {
    if (t->ohash == NULL) return;
    uint32_t end = t->ohcap - t->omig > budget ? t->omig + budget : t->ohcap, moved = 0;
    for (uint32_t j = t->omig; j < end; j++) {
        uint32_t e = t->ohash[j];
        if (e && e != TOMB) {
            hash_put_new(t, e);
            t->ohash[j] = TOMB;
        }
        moved++;
    }
    t->omig = end;
    if (moved > t->max_migrated) t->max_migrated = moved;
    if (t->omig == t->ohcap) {
        PyMem_Free(t->ohash);
        t->ohash = NULL;
        t->ohcap = t->omig = 0;
    }
}

/* Make room for `want` entries at load <= 1/2: a new array twice the size (zeroed lazily by the OS),
 * the current one kept to be drained by migrate_step. O(1) apart from the allocation. */
static int grow_hash(Table *t, uint32_t want) {
    if ((uint64_t)want * 2 <= t->hcap) return 0;
    uint64_t cap = (uint64_t)t->hcap * 2;
    while ((uint64_t)want * 2 > cap) cap *= 2;
    if (cap > ((uint64_t)1 << 31)) {
        PyErr_SetString(PyExc_OverflowError, "table full");
        return -1;
    }
    uint32_t *h = PyMem_Calloc((size_t)cap, sizeof(uint32_t));
    if (h == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    /* never happens in use: the previous growth is drained after hcap / (2 * HASH_STEP) calls */
    if (t->ohash != NULL) migrate_step(t, UINT32_MAX);
    t->ohash = t->hash;
    t->ohcap = t->hcap;
    t->omig = 0;
    t->hash = h;
    t->hcap = (uint32_t)cap;
    t->ngrowths++;
    return 0;
}

static void hash_delete(Table *t, uint32_t i) {
    uint32_t mask = t->hcap - 1, j = i;
    for (;;) {
        j = (j + 1) & mask;
        uint32_t e = t->hash[j];
        if (!e) break;
        Row *r = &t->rows[e - 1];
        uint32_t k = hash_key(space_of(r->type), r->device, r->bid, mask);
        /* move e back to the hole at i unless its home k lies cyclically in (i, j] */
        int stays = (i <= j) ? (i < k && k <= j) : (i < k || k <= j);
        if (!stays) {
            t->hash[i] = e;
            i = j;
        }
    }
    t->hash[i] = 0;
}

/* ------------------------------------------------------------------ owners */
static Owner *owner_get(Table *t, int32_t pid, int create) {
    /* the rows of a batch mostly have one owner: the last one looked up, without the dict */
    if (t->last_owner != NIL && t->owners[t->last_owner].pid == pid) return &t->owners[t->last_owner];
    PyObject *key = PyLong_FromLong(pid);
    if (key == NULL) return NULL;
    PyObject *ix = PyDict_GetItemWithError(t->owner_ix, key);
    if (ix != NULL) {
        Py_DECREF(key);
        size_t o = PyLong_AsSize_t(ix);
        t->last_owner = (uint32_t)o;
        return &t->owners[o];
    }
    if (PyErr_Occurred() || !create) {
        Py_DECREF(key);
        return NULL;
    }
    uint32_t o;
    if (t->freeowner != NIL) {
        o = t->freeowner;
        t->freeowner = t->owners[o].head;
    } else {
        if (t->nowners == t->capowners) {
            uint32_t cap = t->capowners ? t->capowners * 2 : 16;
            Owner *n = PyMem_Realloc(t->owners, (size_t)cap * sizeof(Owner));
            if (n == NULL) {
                Py_DECREF(key);
                PyErr_NoMemory();
                return NULL;
            }
            t->owners = n;
            t->capowners = cap;
        }
        o = t->nowners++;
    }
    PyObject *v = PyLong_FromUnsignedLong(o);
    if (v == NULL || PyDict_SetItem(t->owner_ix, key, v) < 0) {
        Py_XDECREF(v);
        Py_DECREF(key);
        t->owners[o].head = t->freeowner;
        t->freeowner = o;
        return NULL;
    }
    Py_DECREF(v);
    Py_DECREF(key);
    Owner *ow = &t->owners[o];
    ow->pid = pid;
    ow->head = ow->tail = NIL;
    ow->count = 0;
    t->last_owner = o;
    return ow;
}

static void owner_unlink(Table *t, uint32_t slot) {
    Row *r = &t->rows[slot];
    Owner *ow = owner_get(t, r->pid, 0);
    if (ow == NULL) { /* cannot happen in a consistent table */
        PyErr_Clear();
        return;
    }
    if (r->oprev != NIL) t->rows[r->oprev].onext = r->onext; else ow->head = r->onext;
    if (r->onext != NIL) t->rows[r->onext].oprev = r->oprev; else ow->tail = r->oprev;
    if (--ow->count == 0) {
        uint32_t o = (uint32_t)(ow - t->owners);
        PyObject *key = PyLong_FromLong(r->pid);
        if (key == NULL || PyDict_DelItem(t->owner_ix, key) < 0) PyErr_Clear();
        Py_XDECREF(key);
        ow->head = t->freeowner;
        t->freeowner = o;
        if (t->last_owner == o) t->last_owner = NIL;
    }
}

/* ------------------------------------------------------------------ compaction */
/* Move the live row at `from` to the hole at `to` (< from), fixing its index entry and owner-list
 * neighbours. -1 (nothing changed, no error set): its owner could not be looked up now. */
static int move_row(Table *t, uint32_t from, uint32_t to) {
    Row *r = &t->rows[from];
    Owner *ow = NULL;
    if (r->oprev == NIL || r->onext == NIL) {
        ow = owner_get(t, r->pid, 0);
        if (ow == NULL) {
            PyErr_Clear();
            return -1;
        }
    }
    uint32_t pos;
    int in_old;
    if (find_pos2(t, space_of(r->type), r->device, r->bid, &pos, &in_old) != (int64_t)from) return -1;
    (in_old ? t->ohash : t->hash)[pos] = to + 1;
    if (r->oprev != NIL) t->rows[r->oprev].onext = to; else ow->head = to;
    if (r->onext != NIL) t->rows[r->onext].oprev = to; else ow->tail = to;
    t->rows[to] = *r;
    r->flags = 0;
    return 0;
}

/* Advance the compaction cursor by up to `budget` slots (not while a frozen view is open). */
static void compact_step(Table *t, uint32_t budget) {
    if (!t->compacting || t->frozen) return;
    uint32_t scanned = 0, moved = 0;
    while (scanned < budget && t->crd < t->nrows) {
        if (t->rows[t->crd].flags & F_ALIVE) {
            if (t->crd != t->cwr) {
                if (move_row(t, t->crd, t->cwr) < 0) break; /* try again on the next call */
                moved++;
            }
            t->cwr++;
        }
        t->crd++;
        scanned++;
    }
    if (scanned > t->max_scanned) t->max_scanned = scanned;
    if (moved > t->max_moved) t->max_moved = moved;
    if (t->crd < t->nrows) return;
    t->nrows = t->cwr;
    t->compacting = 0;
    if (t->caprows > 64 && t->caprows > 2 * t->nrows + 64) {
        uint32_t cap = t->nrows + t->nrows / 2 + 64;
        Row *rows = PyMem_Realloc(t->rows, (size_t)cap * sizeof(Row));
        if (rows != NULL) {
            t->rows = rows;
            t->caprows = cap;
        }
    }
}

/* After a row was removed at `slot`: note the hole, start or advance the compaction. */
static void after_remove(Table *t, uint32_t slot) {
    if (!t->compacting || slot < t->cwr) {
        if (slot < t->hole_lo) t->hole_lo = slot; /* a hole at or past crd is the cursor's business */
    }
    if (t->frozen) return;
    if (t->live == 0) {
        t->nrows = 0;
        t->compacting = 0;
        t->hole_lo = NIL;
        return;
    }
    if (!t->compacting && t->nrows - t->live > t->live && t->nrows - t->live >= t->min_compact) {
        t->compacting = 1;
        t->cwr = t->crd = t->hole_lo;
        t->hole_lo = NIL;
        t->ncompactions++;
    }
    compact_step(t, t->compact_step);
}

/* ------------------------------------------------------------------ methods */
static PyObject *Table_find(Table *t, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "find(space, device, buffer_id)");
        return NULL;
    }
    if (need_index(t) == NULL) return NULL;
    unsigned space;
    int32_t device;
    uint64_t bid;
    int ok = get_key(args, &space, &device, &bid);
    if (ok < 0) return NULL;
    if (ok == 0) return PyLong_FromLong(-1);
    uint32_t pos;
    return PyLong_FromLongLong(find_pos(t, space, device, bid, &pos));
}

static PyObject *row_tuple(const Row *r);

/* lookup(space, device, buffer_id): the row tuple of that key, or None (find + row in one call). */
static PyObject *Table_lookup(Table *t, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "lookup(space, device, buffer_id)");
        return NULL;
    }
    if (need_index(t) == NULL) return NULL;
    unsigned space;
    int32_t device;
    uint64_t bid;
    int ok = get_key(args, &space, &device, &bid);
    if (ok < 0) return NULL;
    uint32_t pos;
    int64_t s = ok ? find_pos(t, space, device, bid, &pos) : -1;
    if (s < 0) Py_RETURN_NONE;
    return row_tuple(&t->rows[s]);
}

/* add(): the row's slot, or -1 with an exception set (the table full, the key already in it, no memory). */
static int64_t add_row(Table *t, Row r, int strings) {
    migrate_step(t, t->hash_step);
    compact_step(t, t->compact_step); /* before the new row: it must not be moved once its slot is returned */
    if (t->nrows >= NIL - 1) {
        PyErr_SetString(PyExc_OverflowError, "table full");
        return -1;
    }
    if (grow_hash(t, t->live + 1) < 0) return -1;
    uint32_t pos;
    if (find_pos(t, space_of(r.type), r.device, r.bid, &pos) >= 0) {
        PyErr_SetString(PyExc_KeyError, "key is already in the table");
        return -1;
    }
    if (t->nrows == t->caprows) {
        /* +1/8: little slack at a million rows; a big block grows in place (mremap), so no copying */
        uint64_t cap = t->caprows < 512 ? 512 : (uint64_t)t->caprows + t->caprows / 8;
        if (cap > NIL - 1) cap = NIL - 1;
        Row *rows = PyMem_Realloc(t->rows, (size_t)cap * sizeof(Row));
        if (rows == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        t->rows = rows;
        t->caprows = (uint32_t)cap;
    }
    Owner *ow = owner_get(t, r.pid, 1);
    if (ow == NULL) return -1;
    uint32_t slot = t->nrows++;
    r.flags = (uint8_t)(F_ALIVE | (strings ? F_STRINGS : 0));
    r.onext = NIL;
    r.oprev = ow->tail;
    t->rows[slot] = r;
    if (ow->tail != NIL) t->rows[ow->tail].onext = slot; else ow->head = slot;
    ow->tail = slot;
    ow->count++;
    t->hash[pos] = slot + 1;
    t->live++;
    return slot;
}

static PyObject *Table_add(Table *t, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 9) {
        PyErr_SetString(PyExc_TypeError, "add(device, buffer_id, type, size, pid, refs, ts, seq, strings)");
        return NULL;
    }
    if (need_index(t) == NULL) return NULL;
    Row r;
    int strings = PyObject_IsTrue(args[8]);
    if (strings < 0 || get_i32(args[0], &r.device) < 0 || get_u64(args[1], &r.bid) < 0 || get_u8(args[2], &r.type) < 0 ||
        get_u64(args[3], &r.size) < 0 || get_i32(args[4], &r.pid) < 0 || get_u32(args[5], &r.refs) < 0 ||
        get_i64(args[6], &r.ts) < 0 || get_u64(args[7], &r.seq) < 0)
        return NULL;
    int64_t slot = add_row(t, r, strings);
    return slot < 0 ? NULL : PyLong_FromLongLong(slot);
}

/* remove() of a live slot: 0, or -1 with an exception set. */
static int remove_slot(Table *t, uint32_t slot) {
    uint32_t pos;
    int in_old;
    Row *r = &t->rows[slot];
    if (find_pos2(t, space_of(r->type), r->device, r->bid, &pos, &in_old) != (int64_t)slot) {
        PyErr_SetString(PyExc_SystemError, "table index out of step");
        return -1;
    }
    if (in_old) t->ohash[pos] = TOMB; /* keeps the old array's probe chains whole */
    else hash_delete(t, pos);
    owner_unlink(t, slot);
    if (t->views != NULL) save_for_views(t, slot);
    r->flags = 0;
    t->live--;
    migrate_step(t, t->hash_step);
    after_remove(t, slot);
    return 0;
}

static PyObject *Table_remove(Table *t, PyObject *arg) {
    uint32_t slot;
    if (need_index(t) == NULL || check_slot(t, arg, &slot) < 0 || remove_slot(t, slot) < 0) return NULL;
    Py_RETURN_NONE;
}

static PyObject *Table_set_refs(Table *t, PyObject *const *args, Py_ssize_t nargs) {
    uint32_t slot, refs;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "set_refs(slot, refs)");
        return NULL;
    }
    if (check_slot(t, args[0], &slot) < 0 || get_u32(args[1], &refs) < 0) return NULL;
    if (t->views != NULL) save_for_views(t, slot);
    t->rows[slot].refs = refs;
    Py_RETURN_NONE;
}

static PyObject *row_tuple2(const Row *r, uint8_t flags, uint32_t refs) {
    return Py_BuildValue("(iKBKiILKO)", r->device, (unsigned long long)r->bid, r->type, (unsigned long long)r->size,
                         r->pid, refs, (long long)r->ts, (unsigned long long)r->seq,
                         (flags & F_STRINGS) ? Py_True : Py_False);
}

static PyObject *row_tuple(const Row *r) { return row_tuple2(r, r->flags, r->refs); }

/* A view of rows: the table's own (saved == NULL), or a Frozen view's (flags and refs as of the freeze). */
typedef struct {
    const Row *rows;
    uint32_t nrows;
    const uint64_t *saved;
    const uint8_t *flags;
    const uint32_t *refs;
} View;

#define VSAVED(v, s) ((v)->saved != NULL && ((v)->saved[(s) >> 6] >> ((s) & 63) & 1u))
#define VFLAGS(v, s) (VSAVED(v, s) ? (v)->flags[s] : (v)->rows[s].flags)
#define VREFS(v, s) (VSAVED(v, s) ? (v)->refs[s] : (v)->rows[s].refs)

static PyObject *Table_row(Table *t, PyObject *arg) {
    uint32_t slot;
    if (check_slot(t, arg, &slot) < 0) return NULL;
    return row_tuple(&t->rows[slot]);
}

static int get_range(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t want, const char *usage, Py_ssize_t *start,
                     Py_ssize_t *n) {
    if (nargs != want) {
        PyErr_SetString(PyExc_TypeError, usage);
        return -1;
    }
    *start = PyLong_AsSsize_t(args[0]);
    if (*start == -1 && PyErr_Occurred()) return -1;
    *n = PyLong_AsSsize_t(args[1]);
    if (*n == -1 && PyErr_Occurred()) return -1;
    if (*start < 0) *start = 0;
    if (*n < 0) *n = 0;
    return 0;
}

/* rows(start, n, space): up to n live rows of id space `space` (-1: all) from slot `start` on, as
 * (row tuples, their slots, the slot to continue from). */
static PyObject *view_rows(const View *v, PyObject *const *args, Py_ssize_t nargs) {
    Py_ssize_t start, n;
    if (get_range(args, nargs, 3, "rows(start, n, space)", &start, &n) < 0) return NULL;
    long space = PyLong_AsLong(args[2]);
    if (space == -1 && PyErr_Occurred()) return NULL;
    PyObject *out = PyList_New(0), *slots = PyList_New(0);
    if (out == NULL || slots == NULL) goto fail;
    uint32_t s = (uint64_t)start < v->nrows ? (uint32_t)start : v->nrows;
    for (; s < v->nrows && PyList_GET_SIZE(out) < n; s++) {
        const Row *r = &v->rows[s];
        uint8_t f = VFLAGS(v, s);
        if (!(f & F_ALIVE) || (space >= 0 && space_of(r->type) != (unsigned)space)) continue;
        PyObject *tup = row_tuple2(r, f, VREFS(v, s)), *sl = PyLong_FromUnsignedLong(s);
        if (tup == NULL || sl == NULL || PyList_Append(out, tup) < 0 || PyList_Append(slots, sl) < 0) {
            Py_XDECREF(tup);
            Py_XDECREF(sl);
            goto fail;
        }
        Py_DECREF(tup);
        Py_DECREF(sl);
    }
    return Py_BuildValue("(NNI)", out, slots, s);
fail:
    Py_XDECREF(out);
    Py_XDECREF(slots);
    return NULL;
}

static PyObject *Table_rows(Table *t, PyObject *const *args, Py_ssize_t nargs) {
    View v = {t->rows, t->nrows, NULL, NULL, NULL};
    return view_rows(&v, args, nargs);
}

static inline void put_le(unsigned char *p, uint64_t v, int n) {
    for (int i = 0; i < n; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* encode(start, n): BUFFER records (eventcodec.encode_buffer) of up to n live rows from slot start on.
 * Stops before a row that has strings (they live with the caller). Returns (bytes, next slot, slot of
 * the row with strings or -1); that row is not encoded and `next` is past it. */
static PyObject *view_encode(const View *v, PyObject *const *args, Py_ssize_t nargs) {
    Py_ssize_t start, n;
    if (get_range(args, nargs, 2, "encode(start, n)", &start, &n) < 0) return NULL;
    uint32_t s = (uint64_t)start < v->nrows ? (uint32_t)start : v->nrows;
    uint32_t end = s, count = 0;
    long long special = -1;
    for (; end < v->nrows && count < n; end++) {
        uint8_t f = VFLAGS(v, end);
        if (!(f & F_ALIVE)) continue;
        if (f & F_STRINGS) break;
        count++;
    }
    PyObject *b = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)count * BUFFER_SIZE);
    if (b == NULL) return NULL;
    unsigned char *p = (unsigned char *)PyBytes_AS_STRING(b);
    for (; s < end; s++) {
        const Row *r = &v->rows[s];
        if (!(VFLAGS(v, s) & F_ALIVE)) continue;
        put_le(p, (uint32_t)r->device, 4);
        put_le(p + 4, r->bid, 8);
        p[12] = r->type;
        put_le(p + 13, r->size, 8);
        put_le(p + 21, (uint32_t)r->pid, 4);
        put_le(p + 25, VREFS(v, s), 4);
        put_le(p + 29, (uint64_t)r->ts, 8);
        put_le(p + 37, r->seq, 8);
        put_le(p + 45, 0, 4);
        p += BUFFER_SIZE;
    }
    if (s < v->nrows && count < n && (VFLAGS(v, s) & F_ALIVE) && (VFLAGS(v, s) & F_STRINGS)) {
        special = s;
        s++;
    }
    return Py_BuildValue("(NIL)", b, s, special);
}

static PyObject *Table_encode(Table *t, PyObject *const *args, Py_ssize_t nargs) {
    View v = {t->rows, t->nrows, NULL, NULL, NULL};
    return view_encode(&v, args, nargs);
}

/* ------------------------------------------------------------------ pools(): what a pool holds, no object per row */
#define POOLS_MAX 256 /* pools per call (the caller passes (device, type) pairs that rose: a few) */
#define TOP_MAX 64    /* largest rows kept per pool */

typedef struct {
    uint64_t lo, hi; /* a sum of u64 sizes: 128 bits, no overflow for 2^64 rows */
} U128;

static inline void u128_add(U128 *a, uint64_t v) {
    uint64_t lo = a->lo + v;
    a->hi += lo < a->lo;
    a->lo = lo;
}

static PyObject *u128_long(U128 a) {
    if (!a.hi) return PyLong_FromUnsignedLongLong(a.lo);
    PyObject *hi = PyLong_FromUnsignedLongLong(a.hi), *lo = PyLong_FromUnsignedLongLong(a.lo);
    PyObject *sh = PyLong_FromLong(64), *x = NULL, *out = NULL;
    if (hi && lo && sh && (x = PyNumber_Lshift(hi, sh)) != NULL) out = PyNumber_Or(x, lo);
    Py_XDECREF(hi);
    Py_XDECREF(lo);
    Py_XDECREF(sh);
    Py_XDECREF(x);
    return out;
}

typedef struct {
    int32_t device;
    uint8_t type;
    int valid;           /* a (device, type) a row can have */
    U128 bytes;
    uint32_t ntop, top[TOP_MAX]; /* slots, largest size first, ties in slot order */
    PyObject *by_pid;    /* pid -> bytes, in the order of each pid's first row */
    int32_t run_pid;     /* the run of consecutive rows of one pid not yet added to by_pid */
    int run;
    U128 run_bytes;
} Pool;

/* Add the pending run of one pid's bytes to its by_pid entry (rows of one owner come in runs: one dict
 * operation per run, not per row). */
static int pool_flush_run(Pool *p) {
    if (!p->run) return 0;
    p->run = 0;
    PyObject *k = PyLong_FromLong(p->run_pid), *add = u128_long(p->run_bytes), *nv = NULL;
    int r = -1;
    if (k == NULL || add == NULL) goto out;
    PyObject *old = PyDict_GetItemWithError(p->by_pid, k);
    if (old == NULL && PyErr_Occurred()) goto out;
    nv = old == NULL ? Py_NewRef(add) : PyNumber_Add(old, add);
    if (nv != NULL) r = PyDict_SetItem(p->by_pid, k, nv);
out:
    Py_XDECREF(k);
    Py_XDECREF(add);
    Py_XDECREF(nv);
    return r;
}

/* pools(keys, top_n): for each (device, type) of ``keys``, what the live rows of that pool hold, in one
 * pass over the rows: (bytes, the top_n largest rows as row tuples, largest first, ties in row order;
 * {pid: bytes} in the order of each pid's first row). A list, in the order of ``keys``. */
static PyObject *Table_pools(Table *t, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "pools(keys, top_n)");
        return NULL;
    }
    Py_ssize_t top_n = PyLong_AsSsize_t(args[1]);
    if (top_n == -1 && PyErr_Occurred()) return NULL;
    if (top_n < 0 || top_n > TOP_MAX) {
        PyErr_Format(PyExc_ValueError, "top_n must be 0..%d", TOP_MAX);
        return NULL;
    }
    PyObject *keys = PySequence_Fast(args[0], "keys must be a sequence of (device, type)");
    if (keys == NULL) return NULL;
    Py_ssize_t np = PySequence_Fast_GET_SIZE(keys);
    if (np > POOLS_MAX) {
        Py_DECREF(keys);
        PyErr_Format(PyExc_ValueError, "at most %d pools", POOLS_MAX);
        return NULL;
    }
    Pool *pools = PyMem_Calloc(np ? (size_t)np : 1, sizeof(Pool));
    PyObject *out = NULL;
    if (pools == NULL) {
        Py_DECREF(keys);
        return PyErr_NoMemory();
    }
    uint8_t want[256] = {0}; /* type t: some pool has it (a quick test per row) */
    for (Py_ssize_t i = 0; i < np; i++) {
        PyObject *k = PySequence_Fast_GET_ITEM(keys, i);
        if (!PyTuple_Check(k) || PyTuple_GET_SIZE(k) != 2) {
            PyErr_SetString(PyExc_TypeError, "keys must be a sequence of (device, type)");
            goto done;
        }
        int o1 = 0, o2 = 0;
        long long d = PyLong_AsLongLongAndOverflow(PyTuple_GET_ITEM(k, 0), &o1);
        if (d == -1 && PyErr_Occurred()) goto done;
        long long ty = PyLong_AsLongLongAndOverflow(PyTuple_GET_ITEM(k, 1), &o2);
        if (ty == -1 && PyErr_Occurred()) goto done;
        Pool *p = &pools[i];
        p->valid = !o1 && !o2 && d >= INT32_MIN && d <= INT32_MAX && ty >= 0 && ty < 256;
        p->device = (int32_t)d;
        p->type = (uint8_t)ty;
        if (p->valid) want[ty] = 1;
        if ((p->by_pid = PyDict_New()) == NULL) goto done;
    }
    for (uint32_t s = 0; s < t->nrows; s++) {
        const Row *r = &t->rows[s];
        if (!(r->flags & F_ALIVE) || !want[r->type]) continue;
        for (Py_ssize_t i = 0; i < np; i++) {
            Pool *p = &pools[i];
            if (!p->valid || p->type != r->type || p->device != r->device) continue;
            u128_add(&p->bytes, r->size);
            if (p->run && p->run_pid != r->pid && pool_flush_run(p) < 0) goto done;
            if (!p->run) {
                p->run = 1;
                p->run_pid = r->pid;
                p->run_bytes.lo = p->run_bytes.hi = 0;
            }
            u128_add(&p->run_bytes, r->size);
            /* the top: a row enters if larger than the smallest kept (an equal one came first and stays) */
            uint32_t j = p->ntop;
            if (j < (uint32_t)top_n || (j && r->size > t->rows[p->top[j - 1]].size)) {
                if (j == (uint32_t)top_n) j--;
                while (j > 0 && t->rows[p->top[j - 1]].size < r->size) {
                    p->top[j] = p->top[j - 1];
                    j--;
                }
                p->top[j] = s;
                if (p->ntop < (uint32_t)top_n) p->ntop++;
            }
        }
    }
    out = PyList_New(np);
    if (out == NULL) goto done;
    for (Py_ssize_t i = 0; i < np; i++) {
        Pool *p = &pools[i];
        if (pool_flush_run(p) < 0) goto fail;
        PyObject *top = PyList_New(p->ntop);
        if (top == NULL) goto fail;
        for (uint32_t j = 0; j < p->ntop; j++) {
            PyObject *row = row_tuple(&t->rows[p->top[j]]);
            if (row == NULL) {
                Py_DECREF(top);
                goto fail;
            }
            PyList_SET_ITEM(top, j, row);
        }
        PyObject *item = Py_BuildValue("(NNO)", u128_long(p->bytes), top, p->by_pid);
        if (item == NULL) goto fail;
        PyList_SET_ITEM(out, i, item);
    }
    goto done;
fail:
    Py_CLEAR(out);
done:
    for (Py_ssize_t i = 0; i < np; i++) Py_XDECREF(pools[i].by_pid);
    PyMem_Free(pools);
    Py_DECREF(keys);
    return out;
}

static PyObject *Table_owned(Table *t, PyObject *const *args, Py_ssize_t nargs) {
    int32_t pid;
    Py_ssize_t limit = PY_SSIZE_T_MAX;
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "owned(pid[, limit])");
        return NULL;
    }
    if (nargs == 2) {
        limit = PyLong_AsSsize_t(args[1]);
        if (limit == -1 && PyErr_Occurred()) return NULL;
        if (limit < 0) limit = 0;
    }
    if (need_index(t) == NULL || get_i32(args[0], &pid) < 0) {
        if (PyErr_ExceptionMatches(PyExc_OverflowError)) {
            PyErr_Clear();
            return PyList_New(0);
        }
        return NULL;
    }
    Owner *ow = owner_get(t, pid, 0);
    if (ow == NULL) return PyErr_Occurred() ? NULL : PyList_New(0);
    Py_ssize_t n = (Py_ssize_t)ow->count < limit ? (Py_ssize_t)ow->count : limit;
    PyObject *out = PyList_New(n);
    if (out == NULL) return NULL;
    uint32_t s = ow->head;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = PyLong_FromUnsignedLong(s);
        if (v == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, v);
        s = t->rows[s].onext;
    }
    return out;
}

static PyObject *Table_owned_count(Table *t, PyObject *arg) {
    int32_t pid;
    if (need_index(t) == NULL || get_i32(arg, &pid) < 0) {
        if (PyErr_ExceptionMatches(PyExc_OverflowError)) {
            PyErr_Clear();
            return PyLong_FromLong(0);
        }
        return NULL;
    }
    Owner *ow = owner_get(t, pid, 0);
    if (ow == NULL) return PyErr_Occurred() ? NULL : PyLong_FromLong(0);
    return PyLong_FromUnsignedLong(ow->count);
}

static PyObject *Table_owners(Table *t, PyObject *Py_UNUSED(ignored)) {
    if (need_index(t) == NULL) return NULL;
    return PyDict_Keys(t->owner_ix);
}

static void table_free(Table *t) {
    PyMem_Free(t->rows);
    PyMem_Free(t->hash);
    PyMem_Free(t->ohash);
    PyMem_Free(t->owners);
    t->rows = NULL;
    t->hash = t->ohash = NULL;
    t->owners = NULL;
    t->nrows = t->caprows = t->live = t->hcap = t->nowners = t->capowners = 0;
    t->ohcap = t->omig = t->compacting = t->cwr = t->crd = 0;
    t->freeowner = t->hole_lo = t->last_owner = NIL;
}

static int table_init_empty(Table *t) {
    table_free(t);
    t->hash = PyMem_Calloc(8, sizeof(uint32_t));
    if (t->hash == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    t->hcap = 8;
    if (t->owner_ix == NULL) t->owner_ix = PyDict_New();
    else PyDict_Clear(t->owner_ix);
    return t->owner_ix == NULL ? -1 : 0;
}

static PyObject *Table_clear(Table *t, PyObject *Py_UNUSED(ignored)) {
    if (need_index(t) == NULL) return NULL;
    if (t->frozen) {
        PyErr_SetString(PyExc_RuntimeError, "a frozen view of the table is open");
        return NULL;
    }
    if (table_init_empty(t) < 0) return NULL;
    Py_RETURN_NONE;
}

/* copy(): the live rows, in order, without index or owners (a frozen view for encoding / scanning). */
static PyObject *Table_copy(Table *t, PyObject *Py_UNUSED(ignored)) {
    Table *c = PyObject_New(Table, &TableType);
    if (c == NULL) return NULL;
    c->rows = NULL;
    c->hash = c->ohash = NULL;
    c->owners = NULL;
    c->owner_ix = NULL;
    c->frozen = 0;
    c->ohcap = c->omig = c->compacting = c->cwr = c->crd = 0;
    c->hole_lo = NIL;
    c->max_scanned = c->max_moved = c->max_migrated = 0;
    c->ncompactions = c->ngrowths = 0;
    c->min_compact = MIN_COMPACT;
    c->compact_step = COMPACT_STEP;
    c->hash_step = HASH_STEP;
    c->views = NULL;
    c->nowners = c->capowners = c->hcap = 0;
    c->freeowner = c->last_owner = NIL;
    c->nrows = c->caprows = c->live = 0;
    if (t->live) {
        c->rows = PyMem_Malloc((size_t)t->live * sizeof(Row));
        if (c->rows == NULL) {
            Py_DECREF(c);
            return PyErr_NoMemory();
        }
        if (t->live == t->nrows) {
            memcpy(c->rows, t->rows, (size_t)t->live * sizeof(Row));
        } else {
            uint32_t n = 0;
            for (uint32_t s = 0; s < t->nrows; s++)
                if (t->rows[s].flags & F_ALIVE) c->rows[n++] = t->rows[s];
        }
        c->nrows = c->caprows = c->live = t->live;
    }
    return (PyObject *)c;
}

/* freeze(): a view of the live rows as of now, without copying them: rows are only ever appended
 * and, while a view is open, neither squeezed nor reused; flags and ref counts (the only fields that
 * change in place) are saved into the view when they change (save_for_views). O(1): no row is read.
 * close() (or dropping the view) releases the table. */
static PyObject *Table_freeze(Table *t, PyObject *Py_UNUSED(ignored)) {
    if (need_index(t) == NULL) return NULL;
    Frozen *f = PyObject_New(Frozen, &FrozenType);
    if (f == NULL) return NULL;
    f->t = NULL;
    f->next = f->prev = NULL;
    f->saved = NULL;
    f->flags = NULL;
    f->refs = NULL;
    f->nrows = t->nrows;
    f->live = t->live;
    size_t n = t->nrows ? t->nrows : 1;
    f->saved = PyMem_Calloc((n + 63) / 64, sizeof(uint64_t));
    f->flags = PyMem_Calloc(n, 1);
    f->refs = PyMem_Calloc(n, sizeof(uint32_t));
    if (f->saved == NULL || f->flags == NULL || f->refs == NULL) {
        Py_DECREF(f);
        return PyErr_NoMemory();
    }
    Py_INCREF(t);
    f->t = t;
    f->next = t->views;
    if (t->views != NULL) t->views->prev = f;
    t->views = f;
    t->frozen++;
    return (PyObject *)f;
}

static void frozen_close(Frozen *f) {
    Table *t = f->t;
    if (t != NULL) {
        if (f->prev != NULL) f->prev->next = f->next; else t->views = f->next;
        if (f->next != NULL) f->next->prev = f->prev;
        f->next = f->prev = NULL;
        t->frozen--;
        f->t = NULL;
        Py_DECREF(t);
    }
    PyMem_Free(f->saved);
    PyMem_Free(f->flags);
    PyMem_Free(f->refs);
    f->saved = NULL;
    f->flags = NULL;
    f->refs = NULL;
    f->nrows = f->live = 0;
}

static int frozen_view(Frozen *f, View *v) {
    static const uint8_t none_f[1] = {0};
    static const uint32_t none_r[1] = {0};
    static const uint64_t none_s[1] = {0};
    if (f->t == NULL) {
        v->rows = NULL;
        v->nrows = 0;
        v->saved = none_s;
        v->flags = none_f;
        v->refs = none_r;
        return 0;
    }
    v->rows = f->t->rows;
    v->nrows = f->nrows;
    v->saved = f->saved;
    v->flags = f->flags;
    v->refs = f->refs;
    return 0;
}

static PyObject *Frozen_rows(Frozen *f, PyObject *const *args, Py_ssize_t nargs) {
    View v;
    frozen_view(f, &v);
    return view_rows(&v, args, nargs);
}

static PyObject *Frozen_encode(Frozen *f, PyObject *const *args, Py_ssize_t nargs) {
    View v;
    frozen_view(f, &v);
    return view_encode(&v, args, nargs);
}

static PyObject *Frozen_row(Frozen *f, PyObject *arg) {
    Py_ssize_t s = PyLong_AsSsize_t(arg);
    if (s == -1 && PyErr_Occurred()) return NULL;
    View v;
    frozen_view(f, &v);
    if (f->t == NULL || s < 0 || (uint64_t)s >= f->nrows || !(VFLAGS(&v, s) & F_ALIVE)) {
        PyErr_Format(PyExc_IndexError, "no live row at slot %zd", s);
        return NULL;
    }
    return row_tuple2(&f->t->rows[s], VFLAGS(&v, s), VREFS(&v, s));
}

static PyObject *Frozen_close(Frozen *f, PyObject *Py_UNUSED(ignored)) {
    frozen_close(f);
    Py_RETURN_NONE;
}

static Py_ssize_t Frozen_len(Frozen *f) { return f->live; }

static PyObject *Frozen_get_nslots(Frozen *f, void *Py_UNUSED(c)) { return PyLong_FromUnsignedLong(f->nrows); }

static void Frozen_dealloc(Frozen *f) {
    frozen_close(f);
    PyObject_Free(f);
}

static PyMethodDef Frozen_methods[] = {
    {"rows", (PyCFunction)(void (*)(void))Frozen_rows, METH_FASTCALL, "rows(start, n, space) -> (rows, slots, next)"},
    {"encode", (PyCFunction)(void (*)(void))Frozen_encode, METH_FASTCALL, "encode(start, n) -> (bytes, next, special)"},
    {"row", (PyCFunction)Frozen_row, METH_O, "row(slot) as of the freeze"},
    {"close", (PyCFunction)Frozen_close, METH_NOARGS, "release the table (idempotent)"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Frozen_getset[] = {
    {"nslots", (getter)Frozen_get_nslots, NULL, "slots as of the freeze, holes included", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PySequenceMethods Frozen_as_seq = {.sq_length = (lenfunc)Frozen_len};

static PyTypeObject FrozenType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "tt_memtop._native.table.Frozen",
    .tp_basicsize = sizeof(Frozen),
    .tp_dealloc = (destructor)Frozen_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The rows of a Table as of Table.freeze().",
    .tp_methods = Frozen_methods,
    .tp_getset = Frozen_getset,
    .tp_as_sequence = &Frozen_as_seq,
};

static PyObject *Table_nbytes(Table *t, PyObject *Py_UNUSED(ignored)) {
    size_t n = sizeof(Table) + (size_t)t->caprows * sizeof(Row) + ((size_t)t->hcap + t->ohcap) * sizeof(uint32_t) +
               (size_t)t->capowners * sizeof(Owner);
    return PyLong_FromSize_t(n);
}

static PyObject *fail_check(const char *what, uint32_t at) {
    PyErr_Format(PyExc_AssertionError, "table: %s (at %u)", what, at);
    return NULL;
}

static PyObject *Table_check(Table *t, PyObject *Py_UNUSED(ignored)) {
    if (need_index(t) == NULL) return NULL;
    uint32_t live = 0, inhash = 0;
    for (uint32_t s = 0; s < t->nrows; s++) {
        Row *r = &t->rows[s];
        if (!(r->flags & F_ALIVE)) continue;
        live++;
        uint32_t pos;
        if (find_pos(t, space_of(r->type), r->device, r->bid, &pos) != (int64_t)s) return fail_check("row not indexed", s);
    }
    if (live != t->live) return fail_check("live count", live);
    for (uint32_t j = 0; j < t->hcap; j++)
        if (t->hash[j]) {
            inhash++;
            if (t->hash[j] == TOMB || t->hash[j] - 1 >= t->nrows || !(t->rows[t->hash[j] - 1].flags & F_ALIVE))
                return fail_check("stale index", j);
        }
    if (t->ohash != NULL) {
        if (t->omig >= t->ohcap || t->ohcap >= t->hcap) return fail_check("old index", t->omig);
        for (uint32_t j = 0; j < t->ohcap; j++) {
            uint32_t e = t->ohash[j];
            if (!e || e == TOMB) continue;
            inhash++;
            if (j < t->omig || e - 1 >= t->nrows || !(t->rows[e - 1].flags & F_ALIVE)) return fail_check("stale old index", j);
        }
    }
    if (inhash != live) return fail_check("index count", inhash);
    if (t->compacting) {
        if (t->cwr > t->crd || t->crd > t->nrows) return fail_check("compaction cursor", t->crd);
        for (uint32_t s = t->cwr; s < t->crd; s++)
            if (t->rows[s].flags & F_ALIVE) return fail_check("live row behind the cursor", s);
    }
    if (t->hole_lo != NIL && (t->hole_lo >= t->nrows || (t->rows[t->hole_lo].flags & F_ALIVE)))
        return fail_check("lowest hole", t->hole_lo);
    for (uint32_t s = 0; s < t->nrows && s < t->hole_lo; s++)
        if (!(t->rows[s].flags & F_ALIVE) && !(t->compacting && s >= t->cwr)) return fail_check("hole below the lowest", s);
    PyObject *key, *val;
    Py_ssize_t it = 0;
    uint32_t owned = 0;
    while (PyDict_Next(t->owner_ix, &it, &key, &val)) {
        Owner *ow = &t->owners[PyLong_AsSize_t(val)];
        uint32_t s = ow->head, prev = NIL, n = 0;
        while (s != NIL) {
            if (s >= t->nrows || !(t->rows[s].flags & F_ALIVE) || t->rows[s].pid != ow->pid || t->rows[s].oprev != prev)
                return fail_check("owner list", s);
            if (prev != NIL && prev >= s) return fail_check("owner order", s);
            prev = s;
            s = t->rows[s].onext;
            if (++n > t->nrows) return fail_check("owner cycle", s);
        }
        if (prev != ow->tail || n != ow->count || n == 0) return fail_check("owner count", n);
        owned += n;
    }
    if (owned != live) return fail_check("owned total", owned);
    Py_RETURN_NONE;
}

/* stats(): what the incremental housekeeping is doing and the most work one call did (for tests). */
static PyObject *Table_stats(Table *t, PyObject *Py_UNUSED(ignored)) {
    return Py_BuildValue("{sOsIsKsIsIsOsKsI}", "compacting", t->compacting ? Py_True : Py_False, "cursor",
                         t->compacting ? t->crd : 0u, "compactions", (unsigned long long)t->ncompactions,
                         "max_scanned", t->max_scanned, "max_moved", t->max_moved, "migrating",
                         t->ohash != NULL ? Py_True : Py_False, "growths", (unsigned long long)t->ngrowths,
                         "max_migrated", t->max_migrated);
}

/* tune(min_compact, compact_step, hash_step): small values let a test reach every incremental path
 * with a few rows (table.py's tune() takes the same, hash_step ignored). */
static PyObject *Table_tune(Table *t, PyObject *const *args, Py_ssize_t nargs) {
    uint32_t v[3];
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "tune(min_compact, compact_step, hash_step)");
        return NULL;
    }
    for (int i = 0; i < 3; i++) {
        if (get_u32(args[i], &v[i]) < 0) return NULL;
        if (v[i] == 0) {
            PyErr_SetString(PyExc_ValueError, "tune() values must be >= 1");
            return NULL;
        }
    }
    t->min_compact = v[0];
    t->compact_step = v[1];
    t->hash_step = v[2];
    Py_RETURN_NONE;
}

static Py_ssize_t Table_len(Table *t) { return t->live; }

static PyObject *Table_get_nslots(Table *t, void *Py_UNUSED(c)) { return PyLong_FromUnsignedLong(t->nrows); }

static PyObject *Table_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    if (PyTuple_GET_SIZE(args) || (kw && PyDict_GET_SIZE(kw))) {
        PyErr_SetString(PyExc_TypeError, "Table() takes no arguments");
        return NULL;
    }
    Table *t = (Table *)type->tp_alloc(type, 0);
    if (t == NULL) return NULL;
    t->rows = NULL;
    t->hash = t->ohash = NULL;
    t->owners = NULL;
    t->owner_ix = NULL;
    t->frozen = 0;
    t->max_scanned = t->max_moved = t->max_migrated = 0;
    t->ncompactions = t->ngrowths = 0;
    t->min_compact = MIN_COMPACT;
    t->compact_step = COMPACT_STEP;
    t->hash_step = HASH_STEP;
    t->views = NULL;
    if (table_init_empty(t) < 0) {
        Py_DECREF(t);
        return NULL;
    }
    return (PyObject *)t;
}

static void Table_dealloc(Table *t) {
    table_free(t);
    Py_XDECREF(t->owner_ix);
    Py_TYPE(t)->tp_free((PyObject *)t);
}

static PyMethodDef Table_methods[] = {
    {"find", (PyCFunction)(void (*)(void))Table_find, METH_FASTCALL, "find(space, device, buffer_id) -> slot or -1"},
    {"lookup", (PyCFunction)(void (*)(void))Table_lookup, METH_FASTCALL, "lookup(space, device, buffer_id) -> row or None"},
    {"add", (PyCFunction)(void (*)(void))Table_add, METH_FASTCALL,
     "add(device, buffer_id, type, size, pid, refs, ts, seq, strings) -> slot"},
    {"remove", (PyCFunction)Table_remove, METH_O, "remove(slot): slots after it may move"},
    {"set_refs", (PyCFunction)(void (*)(void))Table_set_refs, METH_FASTCALL, "set_refs(slot, refs)"},
    {"row", (PyCFunction)Table_row, METH_O, "row(slot) -> (device, bid, type, size, pid, refs, ts, seq, strings)"},
    {"rows", (PyCFunction)(void (*)(void))Table_rows, METH_FASTCALL, "rows(start, n, space) -> (rows, slots, next)"},
    {"encode", (PyCFunction)(void (*)(void))Table_encode, METH_FASTCALL, "encode(start, n) -> (bytes, next, special)"},
    {"pools", (PyCFunction)(void (*)(void))Table_pools, METH_FASTCALL,
     "pools(keys, top_n) -> [(bytes, top rows, {pid: bytes})] per (device, type) of keys"},
    {"owned", (PyCFunction)(void (*)(void))Table_owned, METH_FASTCALL,
     "owned(pid[, limit]) -> the first (up to limit) slots of pid, in insertion order"},
    {"owned_count", (PyCFunction)Table_owned_count, METH_O, "owned_count(pid) -> int"},
    {"owners", (PyCFunction)Table_owners, METH_NOARGS, "owners() -> pids that own rows"},
    {"clear", (PyCFunction)Table_clear, METH_NOARGS, "remove everything"},
    {"copy", (PyCFunction)Table_copy, METH_NOARGS, "the live rows, without index"},
    {"freeze", (PyCFunction)Table_freeze, METH_NOARGS, "a view of the rows as of now (no copy of them)"},
    {"nbytes", (PyCFunction)Table_nbytes, METH_NOARGS, "bytes of memory held"},
    {"check", (PyCFunction)Table_check, METH_NOARGS, "assert internal consistency"},
    {"tune", (PyCFunction)(void (*)(void))Table_tune, METH_FASTCALL, "tune(min_compact, compact_step, hash_step)"},
    {"stats", (PyCFunction)Table_stats, METH_NOARGS, "incremental compaction / index growth and the most work per call"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Table_getset[] = {
    {"nslots", (getter)Table_get_nslots, NULL, "slots in use, holes included", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PySequenceMethods Table_as_seq = {.sq_length = (lenfunc)Table_len};

static PyTypeObject TableType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "tt_memtop._native.table.Table",
    .tp_basicsize = sizeof(Table),
    .tp_dealloc = (destructor)Table_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Registry rows in columns with a hash index and an owner index (see tt_memtop/core/table.py).",
    .tp_methods = Table_methods,
    .tp_getset = Table_getset,
    .tp_as_sequence = &Table_as_seq,
    .tp_new = Table_new,
};

/* ------------------------------------------------------------------ C API (table_api.h), for mirror.c and ingest.c
 * The same operations as find / row / add / remove / set_refs without a Python call or a row tuple. */
static int api_live(Table *t, uint32_t slot) {
    if (slot >= t->nrows || !(t->rows[slot].flags & F_ALIVE)) {
        PyErr_Format(PyExc_IndexError, "no live row at slot %u", slot);
        return -1;
    }
    return 0;
}

static int64_t api_find(PyObject *o, unsigned space, int32_t device, uint64_t bid) {
    Table *t = (Table *)o;
    if (need_index(t) == NULL) return -2;
    if (space > 2) return -1;
    uint32_t pos;
    return find_pos(t, space, device, bid, &pos);
}

static int api_get(PyObject *o, uint32_t slot, ApiRow *out) {
    Table *t = (Table *)o;
    if (api_live(t, slot) < 0) return -1;
    const Row *r = &t->rows[slot];
    out->bid = r->bid;
    out->size = r->size;
    out->seq = r->seq;
    out->ts = r->ts;
    out->device = r->device;
    out->pid = r->pid;
    out->refs = r->refs;
    out->type = r->type;
    out->strings = (r->flags & F_STRINGS) != 0;
    return 0;
}

static int64_t api_add(PyObject *o, const ApiRow *a) {
    Table *t = (Table *)o;
    if (need_index(t) == NULL) return -1;
    Row r;
    r.bid = a->bid;
    r.size = a->size;
    r.seq = a->seq;
    r.ts = a->ts;
    r.device = a->device;
    r.pid = a->pid;
    r.refs = a->refs;
    r.type = a->type;
    return add_row(t, r, a->strings);
}

static int api_remove(PyObject *o, uint32_t slot) {
    Table *t = (Table *)o;
    if (need_index(t) == NULL || api_live(t, slot) < 0) return -1;
    return remove_slot(t, slot);
}

static int api_set_refs(PyObject *o, uint32_t slot, uint32_t refs) {
    Table *t = (Table *)o;
    if (api_live(t, slot) < 0) return -1;
    if (t->views != NULL) save_for_views(t, slot);
    t->rows[slot].refs = refs;
    return 0;
}

static TableApi table_api = {TABLE_API_VERSION, sizeof(ApiRow), &TableType, api_find, api_get, api_add,
                             api_remove, api_set_refs};

static struct PyModuleDef moduledef = {PyModuleDef_HEAD_INIT, "table", "Compiled registry table.", -1, NULL};

PyMODINIT_FUNC PyInit_table(void) {
    if (PyType_Ready(&TableType) < 0 || PyType_Ready(&FrozenType) < 0) return NULL;
    PyObject *m = PyModule_Create(&moduledef);
    if (m == NULL) return NULL;
    Py_INCREF(&TableType);
    if (PyModule_AddObject(m, "Table", (PyObject *)&TableType) < 0) {
        Py_DECREF(&TableType);
        Py_DECREF(m);
        return NULL;
    }
    PyObject *cap = PyCapsule_New(&table_api, TABLE_API_CAPSULE, NULL);
    if (cap == NULL || PyModule_AddObject(m, "api", cap) < 0) {
        Py_XDECREF(cap);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
