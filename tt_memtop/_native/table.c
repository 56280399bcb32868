/* The registry's storage in columns: one fixed-size row per live entry, an open-addressing hash
 * index keyed by (id space, device, buffer_id), and an owner index (a doubly linked list of rows per
 * owner PID, in insertion order).
 *
 * Behaviour is defined by the pure-Python twin, tt_memtop/core/table.py (PyTable); both are tested
 * by one suite. Rows are appended; a removed row leaves a hole, and holes are squeezed out (order
 * kept) once they outnumber the live rows. A row's slot number is therefore only valid until the
 * next remove(). No Python object is kept per entry: about 56 bytes of row + 8 of index.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define NIL 0xFFFFFFFFu
#define F_ALIVE 1u
#define F_STRINGS 2u
#define BUFFER_SIZE 49 /* eventcodec.BUFFER: <iQBQiIqQHH */
#define MIN_COMPACT 1024u

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
    uint32_t frozen;                        /* open Frozen views: rows stay where they are */
} Table;

typedef struct {
    PyObject_HEAD
    Table *t;       /* NULL once closed */
    uint32_t nrows, live;
    uint8_t *flags; /* as of the freeze */
    uint32_t *refs;
} Frozen;

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
static int64_t find_pos(Table *t, unsigned space, int32_t device, uint64_t bid, uint32_t *pos) {
    uint32_t mask = t->hcap - 1, i = hash_key(space, device, bid, mask);
    for (;;) {
        uint32_t e = t->hash[i];
        if (e == 0) {
            *pos = i;
            return -1;
        }
        Row *r = &t->rows[e - 1];
        if (r->bid == bid && r->device == device && space_of(r->type) == space) {
            *pos = i;
            return (int64_t)(e - 1);
        }
        i = (i + 1) & mask;
    }
}

static int grow_hash(Table *t, uint32_t want) {
    uint32_t cap = t->hcap;
    while ((uint64_t)want * 2 > cap) cap *= 2;
    if (cap == t->hcap) return 0;
    uint32_t *h = PyMem_Calloc(cap, sizeof(uint32_t));
    if (h == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    uint32_t mask = cap - 1;
    for (uint32_t j = 0; j < t->hcap; j++) {
        uint32_t e = t->hash[j];
        if (!e) continue;
        Row *r = &t->rows[e - 1];
        uint32_t i = hash_key(space_of(r->type), r->device, r->bid, mask);
        while (h[i]) i = (i + 1) & mask;
        h[i] = e;
    }
    PyMem_Free(t->hash);
    t->hash = h;
    t->hcap = cap;
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
    PyObject *key = PyLong_FromLong(pid);
    if (key == NULL) return NULL;
    PyObject *ix = PyDict_GetItemWithError(t->owner_ix, key);
    if (ix != NULL) {
        Py_DECREF(key);
        return &t->owners[PyLong_AsSize_t(ix)];
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
    }
}

/* ------------------------------------------------------------------ compaction */
static void compact(Table *t) {
    uint32_t *remap = PyMem_Malloc((size_t)t->nrows * sizeof(uint32_t));
    if (remap == NULL) return; /* not now: holes are harmless */
    uint32_t n = 0;
    for (uint32_t s = 0; s < t->nrows; s++) {
        if (t->rows[s].flags & F_ALIVE) {
            remap[s] = n;
            if (n != s) t->rows[n] = t->rows[s];
            n++;
        } else {
            remap[s] = NIL;
        }
    }
    for (uint32_t s = 0; s < n; s++) {
        Row *r = &t->rows[s];
        if (r->onext != NIL) r->onext = remap[r->onext];
        if (r->oprev != NIL) r->oprev = remap[r->oprev];
    }
    if (t->hash != NULL)
        for (uint32_t j = 0; j < t->hcap; j++)
            if (t->hash[j]) t->hash[j] = remap[t->hash[j] - 1] + 1;
    for (uint32_t o = 0; o < t->nowners; o++) {
        Owner *ow = &t->owners[o];
        if (ow->count) {
            ow->head = remap[ow->head];
            ow->tail = remap[ow->tail];
        }
    }
    PyMem_Free(remap);
    t->nrows = n;
    if (t->caprows > 64 && t->caprows > 2 * n + 64) {
        uint32_t cap = n + n / 2 + 64;
        Row *rows = PyMem_Realloc(t->rows, (size_t)cap * sizeof(Row));
        if (rows != NULL) {
            t->rows = rows;
            t->caprows = cap;
        }
    }
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
    if (t->nrows >= NIL - 1) {
        PyErr_SetString(PyExc_OverflowError, "table full");
        return NULL;
    }
    if (grow_hash(t, t->live + 1) < 0) return NULL;
    uint32_t pos;
    if (find_pos(t, space_of(r.type), r.device, r.bid, &pos) >= 0) {
        PyErr_SetString(PyExc_KeyError, "key is already in the table");
        return NULL;
    }
    if (t->nrows == t->caprows) {
        /* +1/8: little slack at a million rows; a big block grows in place (mremap), so no copying */
        uint64_t cap = t->caprows < 512 ? 512 : (uint64_t)t->caprows + t->caprows / 8;
        if (cap > NIL - 1) cap = NIL - 1;
        Row *rows = PyMem_Realloc(t->rows, (size_t)cap * sizeof(Row));
        if (rows == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        t->rows = rows;
        t->caprows = (uint32_t)cap;
    }
    Owner *ow = owner_get(t, r.pid, 1);
    if (ow == NULL) return NULL;
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
    return PyLong_FromUnsignedLong(slot);
}

static PyObject *Table_remove(Table *t, PyObject *arg) {
    uint32_t slot, pos;
    if (need_index(t) == NULL || check_slot(t, arg, &slot) < 0) return NULL;
    Row *r = &t->rows[slot];
    if (find_pos(t, space_of(r->type), r->device, r->bid, &pos) != (int64_t)slot) {
        PyErr_SetString(PyExc_SystemError, "table index out of step");
        return NULL;
    }
    hash_delete(t, pos);
    owner_unlink(t, slot);
    r->flags = 0;
    t->live--;
    if (t->frozen == 0) {
        if (t->nrows - t->live > t->live && t->nrows - t->live >= MIN_COMPACT) compact(t);
        if (t->live == 0) t->nrows = 0;
    }
    Py_RETURN_NONE;
}

static PyObject *Table_set_refs(Table *t, PyObject *const *args, Py_ssize_t nargs) {
    uint32_t slot, refs;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "set_refs(slot, refs)");
        return NULL;
    }
    if (check_slot(t, args[0], &slot) < 0 || get_u32(args[1], &refs) < 0) return NULL;
    t->rows[slot].refs = refs;
    Py_RETURN_NONE;
}

static PyObject *row_tuple2(const Row *r, uint8_t flags, uint32_t refs) {
    return Py_BuildValue("(iKBKiILKO)", r->device, (unsigned long long)r->bid, r->type, (unsigned long long)r->size,
                         r->pid, refs, (long long)r->ts, (unsigned long long)r->seq,
                         (flags & F_STRINGS) ? Py_True : Py_False);
}

static PyObject *row_tuple(const Row *r) { return row_tuple2(r, r->flags, r->refs); }

/* A view of rows: the table's own, or a Frozen view's (flags and refs as of the freeze). */
typedef struct {
    const Row *rows;
    uint32_t nrows;
    const uint8_t *flags;
    const uint32_t *refs;
} View;

#define VFLAGS(v, s) ((v)->flags ? (v)->flags[s] : (v)->rows[s].flags)
#define VREFS(v, s) ((v)->refs ? (v)->refs[s] : (v)->rows[s].refs)

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
    View v = {t->rows, t->nrows, NULL, NULL};
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
    View v = {t->rows, t->nrows, NULL, NULL};
    return view_encode(&v, args, nargs);
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
    PyMem_Free(t->owners);
    t->rows = NULL;
    t->hash = NULL;
    t->owners = NULL;
    t->nrows = t->caprows = t->live = t->hcap = t->nowners = t->capowners = 0;
    t->freeowner = NIL;
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
    c->hash = NULL;
    c->owners = NULL;
    c->owner_ix = NULL;
    c->frozen = 0;
    c->nowners = c->capowners = c->hcap = 0;
    c->freeowner = NIL;
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
 * change in place) are copied. close() (or dropping the view) releases the table. */
static PyObject *Table_freeze(Table *t, PyObject *Py_UNUSED(ignored)) {
    if (need_index(t) == NULL) return NULL;
    Frozen *f = PyObject_New(Frozen, &FrozenType);
    if (f == NULL) return NULL;
    f->t = NULL;
    f->nrows = t->nrows;
    f->live = t->live;
    f->flags = PyMem_Malloc(t->nrows ? t->nrows : 1);
    f->refs = PyMem_Malloc((t->nrows ? t->nrows : 1) * sizeof(uint32_t));
    if (f->flags == NULL || f->refs == NULL) {
        Py_DECREF(f);
        return PyErr_NoMemory();
    }
    for (uint32_t s = 0; s < t->nrows; s++) {
        f->flags[s] = t->rows[s].flags;
        f->refs[s] = t->rows[s].refs;
    }
    Py_INCREF(t);
    f->t = t;
    t->frozen++;
    return (PyObject *)f;
}

static void frozen_close(Frozen *f) {
    if (f->t != NULL) {
        f->t->frozen--;
        Py_DECREF(f->t);
        f->t = NULL;
    }
    PyMem_Free(f->flags);
    PyMem_Free(f->refs);
    f->flags = NULL;
    f->refs = NULL;
    f->nrows = f->live = 0;
}

static int frozen_view(Frozen *f, View *v) {
    static const uint8_t none_f[1] = {0};
    static const uint32_t none_r[1] = {0};
    if (f->t == NULL) {
        v->rows = NULL;
        v->nrows = 0;
        v->flags = none_f;
        v->refs = none_r;
        return 0;
    }
    v->rows = f->t->rows;
    v->nrows = f->nrows;
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
    if (f->t == NULL || s < 0 || (uint64_t)s >= f->nrows || !(f->flags[s] & F_ALIVE)) {
        PyErr_Format(PyExc_IndexError, "no live row at slot %zd", s);
        return NULL;
    }
    return row_tuple2(&f->t->rows[s], f->flags[s], f->refs[s]);
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
    size_t n = sizeof(Table) + (size_t)t->caprows * sizeof(Row) + (size_t)t->hcap * sizeof(uint32_t) +
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
            if (t->hash[j] - 1 >= t->nrows || !(t->rows[t->hash[j] - 1].flags & F_ALIVE)) return fail_check("stale index", j);
        }
    if (inhash != live) return fail_check("index count", inhash);
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
    t->hash = NULL;
    t->owners = NULL;
    t->owner_ix = NULL;
    t->frozen = 0;
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
    {"owned", (PyCFunction)(void (*)(void))Table_owned, METH_FASTCALL,
     "owned(pid[, limit]) -> the first (up to limit) slots of pid, in insertion order"},
    {"owned_count", (PyCFunction)Table_owned_count, METH_O, "owned_count(pid) -> int"},
    {"owners", (PyCFunction)Table_owners, METH_NOARGS, "owners() -> pids that own rows"},
    {"clear", (PyCFunction)Table_clear, METH_NOARGS, "remove everything"},
    {"copy", (PyCFunction)Table_copy, METH_NOARGS, "the live rows, without index"},
    {"freeze", (PyCFunction)Table_freeze, METH_NOARGS, "a view of the rows as of now (no copy of them)"},
    {"nbytes", (PyCFunction)Table_nbytes, METH_NOARGS, "bytes of memory held"},
    {"check", (PyCFunction)Table_check, METH_NOARGS, "assert internal consistency"},
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
    return m;
}
