/* tt_memtop._native.ingest: the server's apply path over a chunk of messages, compiled.
 *
 * At 200k messages/s the server's time went to the interpreter around each message: the inline checks
 * of ProducerIngest._ingest, Registry.apply making an Event per message, the event encoded again for
 * subscribers, its log line formatted from the Event. Here a run of ordinary ALLOC / FREE messages is
 * applied in one call, with the same calls on the same objects as the pure path (the registry's table
 * through table.c's C API when it is the compiled Table (table_api.h), else its own methods; its per-space counts list, its per-device _DeviceUsage objects through their
 * slots), and the chunk's events come out already encoded (eventcodec.EVENT records, no Event object)
 * and its log lines already rendered.
 *
 *   setup(DeviceUsage, wire_classes, event_format, max_devices, max_size)   once, from producers.py
 *   apply_wire(registry, msgs, start, ts, pre_s5, cap, alloc_ok_pid, frees_ok, inv_len, encode, lines)
 *       -> (next, events | None, lines | None, nlines)
 *       Applies msgs[start:next], stopping at the first message it does not take: anything but a
 *       WireMessage ALLOC / FREE of the buffer space; an ALLOC that the original of the connection's
 *       layout drops (pre_s5: the 72/112-byte rules); an ALLOC while ``cap`` (>0) live entries exist;
 *       an ALLOC of another PID than ``alloc_ok_pid`` or a FREE without ``frees_ok`` when ``alloc_ok_pid``
 *       is not None... (peer checks: see producers.py); a device at or beyond ``inv_len`` (>= 0: the
 *       inventory grows); an entry with a name, or of a type past TRACE, in the way. The caller (the
 *       reference loop) takes msgs[next] and calls again. ``encode``: the events as EVENT records
 *       (bytes), else None; ``lines``: 0 none, 1 hex ids, 2 decimal ids: the original's lines (bytes).
 *
 *   render_lines(items, hex_ids) -> (bytes, count) | None
 *       logformat.render_lines: each item a str (copied) or a buffer Event (the original's alloc /
 *       free / unknown-free line). None when an item is something it does not handle exactly as the
 *       pure function does (a value out of range, a str that is not valid UTF-8...): the caller then
 *       uses the pure function.
 *
 * Plain C11 and the CPython C API. The pure twin of apply_wire is producers._apply_wire; tests compare
 * both with the reference loop on random chunks (tests/test_server_ingest.py).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <structmember.h>

#include "table_api.h"

#define NTYPES 7
#define U32MAX 0xFFFFFFFFLL
#define EVENT_SIZE 52

/* ------------------------------------------------------------------------------------------ output */

typedef struct {
    char *p;
    size_t len, cap;
} Out;

static int out_reserve(Out *o, size_t more) {
    if (o->len + more <= o->cap) return 0;
    size_t cap = o->cap ? o->cap : 256; /* small chunks: the small-object allocator */
    while (cap < o->len + more) cap *= 2;
    char *p = PyMem_Realloc(o->p, cap);
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    o->p = p;
    o->cap = cap;
    return 0;
}

/* the callers reserve enough room first: these never fail */
static inline void put(Out *o, const char *s, size_t n) {
    memcpy(o->p + o->len, s, n);
    o->len += n;
}
#define PUTS(o, lit) put((o), (lit), sizeof(lit) - 1)

static void put_u64(Out *o, unsigned long long v) {
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n) o->p[o->len++] = tmp[--n];
}

static void put_i64(Out *o, long long v) {
    if (v < 0) {
        o->p[o->len++] = '-';
        put_u64(o, (unsigned long long)(-(v + 1)) + 1u);
    } else {
        put_u64(o, (unsigned long long)v);
    }
}

static void put_hex(Out *o, unsigned long long v) {
    char tmp[20];
    int n = 0;
    do {
        tmp[n++] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v);
    PUTS(o, "0x");
    while (n) o->p[o->len++] = tmp[--n];
}

static const char *const TYPE_NAMES[] = {"DRAM", "L1", "SYSTEM_MEMORY", "L1_SMALL", "TRACE"};

enum { K_ALLOC = 1, K_REF_INC = 2, K_REF_DEC = 3, K_FREE = 4, K_FREE_UNKNOWN = 5 };

/* The original's line of a buffer event (logformat.render_lines); reserves its own room. */
static int put_line(Out *o, long long kind, long long pid, long long dev, long long bt, unsigned long long bid,
                    unsigned long long size, long long rc, int hex_ids) {
    if (out_reserve(o, 256)) return -1;
    if (kind == K_ALLOC || kind == K_REF_INC) {
        PUTS(o, "\xe2\x9c\x93 [PID ");
        put_i64(o, pid);
        PUTS(o, "] Allocated ");
        put_u64(o, size);
        PUTS(o, " bytes of ");
        const char *name = (bt >= 0 && bt < 5) ? TYPE_NAMES[bt] : "UNKNOWN";
        put(o, name, strlen(name));
        PUTS(o, " on device ");
        put_i64(o, dev);
        PUTS(o, " (buffer_id=");
        if (hex_ids) put_hex(o, bid); else put_u64(o, bid);
        if (kind == K_REF_INC) {
            PUTS(o, ", ref_count=");
            put_i64(o, rc);
        }
        PUTS(o, ")\n");
    } else if (kind == K_FREE || kind == K_REF_DEC) {
        PUTS(o, "\xe2\x9c\x97 [PID ");
        put_i64(o, pid);
        PUTS(o, "] Freed buffer ");
        if (hex_ids) put_hex(o, bid); else put_u64(o, bid);
        PUTS(o, " on device ");
        put_i64(o, dev);
        PUTS(o, " (");
        put_u64(o, size);
        if (rc > 0) {
            PUTS(o, " bytes, ref_count=");
            put_i64(o, rc);
            PUTS(o, " remaining)\n");
        } else {
            PUTS(o, " bytes, FINAL)\n");
        }
    } else {
        PUTS(o, "\xe2\x9a\xa0 [PID ");
        put_i64(o, pid);
        PUTS(o, "] Deallocation for unknown buffer ");
        if (hex_ids) put_hex(o, bid); else put_u64(o, bid);
        PUTS(o, " on device ");
        put_i64(o, dev);
        PUTS(o, " (allocated before tracking started)\n");
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ render_lines */

static PyObject *s_kind, *s_pid, *s_size, *s_buffer_type, *s_device, *s_buffer_id, *s_ref_count;

/* An attribute as a C integer; 0 on success, 1 when the value is not one we format exactly (fallback).
 * Values that are printed must be exact ints (a bool or an int subclass may print otherwise); the
 * kind and the buffer type are only compared, so IntEnum members are fine there. */
static int attr_ll_any(PyObject *obj, PyObject *name, long long *v, int exact) {
    PyObject *x = PyObject_GetAttr(obj, name);
    if (x == NULL) return -1;
    if (exact ? !PyLong_CheckExact(x) : !PyLong_Check(x)) {
        Py_DECREF(x);
        return 1;
    }
    int overflow = 0;
    *v = PyLong_AsLongLongAndOverflow(x, &overflow);
    Py_DECREF(x);
    if (*v == -1 && PyErr_Occurred()) return -1;
    return overflow ? 1 : 0;
}

static int attr_ll(PyObject *obj, PyObject *name, long long *v) { return attr_ll_any(obj, name, v, 1); }

static int attr_ull(PyObject *obj, PyObject *name, unsigned long long *v) {
    PyObject *x = PyObject_GetAttr(obj, name);
    if (x == NULL) return -1;
    if (!PyLong_CheckExact(x)) {
        Py_DECREF(x);
        return 1;
    }
    *v = PyLong_AsUnsignedLongLong(x);
    Py_DECREF(x);
    if (*v == (unsigned long long)-1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError)) return -1;
        PyErr_Clear(); /* negative or too large: the pure function formats it */
        return 1;
    }
    return 0;
}

/* 0: line appended (or nothing to print); 1: fall back; -1: error */
static int render_event(Out *o, PyObject *ev, int hex_ids, Py_ssize_t *count) {
    long long kind, pid, bt = 0, dev, rc = 0;
    unsigned long long size = 0, bid;
    int r;
    if ((r = attr_ll_any(ev, s_kind, &kind, 0))) return r;
    if (kind < K_ALLOC || kind > K_FREE_UNKNOWN) return 0; /* no line for other kinds */
    if ((r = attr_ll(ev, s_pid, &pid))) return r;
    if ((r = attr_ll(ev, s_device, &dev))) return r;
    if ((r = attr_ull(ev, s_buffer_id, &bid))) return r;
    if (kind != K_FREE_UNKNOWN) {
        if ((r = attr_ull(ev, s_size, &size))) return r;
        if ((r = attr_ll(ev, s_ref_count, &rc))) return r;
    }
    if (kind == K_ALLOC || kind == K_REF_INC) {
        if ((r = attr_ll_any(ev, s_buffer_type, &bt, 0))) return r;
    }
    if (put_line(o, kind, pid, dev, bt, bid, size, rc, hex_ids)) return -1;
    (*count)++;
    return 0;
}

static PyObject *render_lines(PyObject *self, PyObject *args) {
    PyObject *items;
    int hex_ids = 1;
    if (!PyArg_ParseTuple(args, "O!|p:render_lines", &PyList_Type, &items, &hex_ids)) return NULL;
    Out o = {NULL, 0, 0};
    Py_ssize_t count = 0;
    PyObject *result = NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(items); i++) {
        PyObject *it = PyList_GET_ITEM(items, i);
        int r;
        if (PyUnicode_CheckExact(it)) {
            Py_ssize_t n;
            const char *s = PyUnicode_AsUTF8AndSize(it, &n);
            if (s == NULL) {
                if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) goto done;
                PyErr_Clear();
                r = 1;
            } else if (out_reserve(&o, (size_t)n + 1)) {
                goto done;
            } else {
                put(&o, s, (size_t)n);
                PUTS(&o, "\n");
                count++;
                r = 0;
            }
        } else if (PyUnicode_Check(it)) {
            r = 1; /* a str subclass: the pure function's business */
        } else {
            Py_INCREF(it); /* the list may change under attribute look-ups (properties): keep the item */
            r = render_event(&o, it, hex_ids, &count);
            Py_DECREF(it);
        }
        if (r < 0) goto done;
        if (r > 0) {
            result = Py_NewRef(Py_None);
            goto done;
        }
    }
    result = Py_BuildValue("(y#n)", o.len ? o.p : "", (Py_ssize_t)o.len, count);
done:
    PyMem_Free(o.p);
    return result;
}

/* ------------------------------------------------------------------------------------------ apply_wire */

enum { U_TOTALS, U_COUNT, U_BY_PID, U_N };
static const char *U_NAMES[U_N] = {"totals", "count", "by_pid"};
static Py_ssize_t u_off[U_N];
static PyTypeObject *usage_type;
static PyObject *wire_classes; /* tuple of the WireMessage classes taken */
static long long max_devices;
static unsigned long long max_size;
static PyObject *small[2], *minus_one;
static PyObject *s_t, *s_counts, *s_usage, *s_seq, *s_messages, *s_unknown, *s_unstorable, *s_find, *s_row, *s_add,
    *s_remove, *s_set_refs;
static int ready = 0;
static const TableApi *table_api = NULL; /* table_api.h; NULL: every table through its methods */

#define SLOT(o, off) (*(PyObject **)((char *)(o) + (off)))

static PyObject *setup(PyObject *self, PyObject *args) {
    PyObject *ut, *classes;
    const char *fmt;
    unsigned long long msize;
    long long mdev;
    if (!PyArg_ParseTuple(args, "O!O!sLK:setup", &PyType_Type, &ut, &PyTuple_Type, &classes, &fmt, &mdev, &msize))
        return NULL;
    if (strcmp(fmt, "<QqBiiBQQIHHH") != 0) {
        PyErr_SetString(PyExc_ValueError, "the event record layout is not the one this module writes");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(classes); i++) {
        PyObject *c = PyTuple_GET_ITEM(classes, i);
        if (!PyType_Check(c) || !PyType_IsSubtype((PyTypeObject *)c, &PyTuple_Type)) {
            PyErr_SetString(PyExc_TypeError, "wire classes must be tuple subclasses");
            return NULL;
        }
    }
    for (int i = 0; i < U_N; i++) {
        PyObject *d = PyObject_GetAttrString(ut, U_NAMES[i]);
        if (d == NULL) return NULL;
        if (Py_TYPE(d) != &PyMemberDescr_Type || ((PyMemberDescrObject *)d)->d_member->type != T_OBJECT_EX ||
            (((PyMemberDescrObject *)d)->d_member->flags & READONLY)) {
            Py_DECREF(d);
            PyErr_Format(PyExc_TypeError, "%s.%s is not a writable slot", ((PyTypeObject *)ut)->tp_name, U_NAMES[i]);
            return NULL;
        }
        u_off[i] = ((PyMemberDescrObject *)d)->d_member->offset;
        Py_DECREF(d);
    }
    Py_XSETREF(usage_type, (PyTypeObject *)Py_NewRef(ut));
    Py_XSETREF(wire_classes, Py_NewRef(classes));
    max_devices = mdev;
    max_size = msize;
    table_api = load_table_api();
    ready = 1;
    Py_RETURN_NONE;
}

typedef struct {
    PyObject *table, *counts, *usage;
    int fast; /* the table is the compiled Table: its operations through table_api */
} Ctx;


/* table.<name>(*args), no bound method made */
static inline PyObject *tcall(Ctx *c, PyObject *name, PyObject *const *args, size_t n) {
    PyObject *a[10];
    a[0] = c->table;
    for (size_t k = 0; k < n; k++) a[k + 1] = args[k];
    return PyObject_VectorcallMethod(name, a, (n + 1) | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

/* list[i] += delta (the counts list, a usage list) */
static int item_add(PyObject *list, Py_ssize_t i, PyObject *delta) {
    if (PyList_CheckExact(list) && i >= 0 && i < PyList_GET_SIZE(list)) {
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

/* Registry._account(device, t, size, pid, sign), t a buffer type 0..4 */
static int account(Ctx *c, PyObject *device, long t, PyObject *size, PyObject *pid, int sign) {
    PyObject *sz = sign < 0 ? PyNumber_Negative(size) : Py_NewRef(size);
    if (sz == NULL) return -1;
    int rc = -1;
    PyObject *pt = NULL;
    PyObject *u = PyDict_GetItemWithError(c->usage, device);
    if (u == NULL) {
        if (PyErr_Occurred()) goto done;
        u = PyObject_CallNoArgs((PyObject *)usage_type);
        if (u == NULL) goto done;
        int r = PyDict_SetItem(c->usage, device, u);
        Py_DECREF(u);
        if (r < 0) goto done;
    }
    if (Py_TYPE(u) != usage_type) {
        PyErr_SetString(PyExc_TypeError, "registry usage is not a _DeviceUsage");
        goto done;
    }
    Py_INCREF(u);
    PyObject *sg = sign < 0 ? minus_one : small[1];
    PyObject *totals = SLOT(u, u_off[U_TOTALS]);
    if (totals == NULL || item_add(totals, t, sz) < 0) goto done_u;
    PyObject *cnt = SLOT(u, u_off[U_COUNT]);
    PyObject *nc = cnt ? PyNumber_Add(cnt, sg) : NULL;
    if (nc == NULL) goto done_u;
    SLOT(u, u_off[U_COUNT]) = nc;
    Py_DECREF(cnt);
    PyObject *by_pid = SLOT(u, u_off[U_BY_PID]);
    if (by_pid == NULL || !PyDict_Check(by_pid)) {
        PyErr_SetString(PyExc_TypeError, "by_pid is not a dict");
        goto done_u;
    }
    pt = PyDict_GetItemWithError(by_pid, pid);
    if (pt == NULL) {
        if (PyErr_Occurred()) goto done_u;
        pt = PyList_New(NTYPES + 1);
        if (pt == NULL) goto done_u;
        for (int i = 0; i <= NTYPES; i++) PyList_SET_ITEM(pt, i, Py_NewRef(small[0]));
        if (PyDict_SetItem(by_pid, pid, pt) < 0) {
            Py_CLEAR(pt);
            goto done_u;
        }
    } else {
        Py_INCREF(pt);
    }
    if (item_add(pt, t, sz) < 0 || item_add(pt, NTYPES, sg) < 0) goto done_u;
    PyObject *n = PySequence_GetItem(pt, NTYPES);
    if (n == NULL) goto done_u;
    int nz = PyObject_IsTrue(n);
    Py_DECREF(n);
    if (nz < 0) goto done_u;
    if (!nz && PyDict_DelItem(by_pid, pid) < 0) goto done_u;
    rc = 0;
done_u:
    Py_XDECREF(pt);
    Py_DECREF(u);
done:
    Py_DECREF(sz);
    return rc;
}

/* an exact int as a C value; 1 if it is not one (or out of range), -1 on error */
static int as_ll(PyObject *x, long long *v) {
    if (!PyLong_CheckExact(x)) return 1;
    int overflow = 0;
    *v = PyLong_AsLongLongAndOverflow(x, &overflow);
    if (*v == -1 && PyErr_Occurred()) return -1;
    return overflow ? 1 : 0;
}

static int as_ull(PyObject *x, unsigned long long *v) {
    if (!PyLong_CheckExact(x)) return 1;
    *v = PyLong_AsUnsignedLongLong(x);
    if (*v == (unsigned long long)-1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError)) return -1;
        PyErr_Clear();
        return 1;
    }
    return 0;
}

static inline void wr64(char *p, uint64_t v) { memcpy(p, &v, 8); }
static inline void wr32(char *p, uint32_t v) { memcpy(p, &v, 4); }

/* one eventcodec.EVENT record, no strings ("<QqBiiBQQIHHH") */
static void put_event(Out *o, unsigned long long seq, long long ts, int kind, long long pid, long long dev, long long bt,
                      unsigned long long bid, unsigned long long size, long long refs) {
    char *p = o->p + o->len;
    wr64(p, seq);
    wr64(p + 8, (uint64_t)ts);
    p[16] = (char)kind;
    wr32(p + 17, (uint32_t)(int32_t)pid);
    wr32(p + 21, (uint32_t)(int32_t)dev);
    p[25] = (char)bt;
    wr64(p + 26, bid);
    wr64(p + 34, size);
    wr32(p + 42, (uint32_t)refs);
    memset(p + 46, 0, 6);
    o->len += EVENT_SIZE;
}

/* the slot a table call returned, as a C value (-2: error) */
static long long slot_of(PyObject *s) {
    if (s == NULL) return -2;
    long long v = PyLong_AsLongLong(s);
    if (v == -1 && PyErr_Occurred()) return -2;
    return v;
}

/* does this row hold a value none of our lines / records write as the pure path does? (fields 0..5, 8) */
static int row_plain(PyObject *row, long long *dev, unsigned long long *bid, long long *bt, unsigned long long *size,
                     long long *pid, long long *refs, int *has) {
    if (!PyTuple_CheckExact(row) || PyTuple_GET_SIZE(row) != 9) return 0;
    if (as_ll(PyTuple_GET_ITEM(row, 0), dev) || as_ull(PyTuple_GET_ITEM(row, 1), bid) ||
        as_ll(PyTuple_GET_ITEM(row, 2), bt) || as_ull(PyTuple_GET_ITEM(row, 3), size) ||
        as_ll(PyTuple_GET_ITEM(row, 4), pid) || as_ll(PyTuple_GET_ITEM(row, 5), refs))
        return 0; /* (an error is taken up by the caller through PyErr_Occurred) */
    PyObject *h = PyTuple_GET_ITEM(row, 8);
    if (h != Py_True && h != Py_False) return 0;
    *has = h == Py_True;
    return *bt >= 0 && *bt <= 4 && *pid >= INT32_MIN && *pid <= INT32_MAX && *dev >= INT32_MIN && *dev <= INT32_MAX &&
           *refs >= 0 && *refs <= U32MAX;
}

/* A live row as the loop reads it: from the C API, or from the row tuple (kept for its objects) */
typedef struct {
    long long dev, bt, pid, refs;
    unsigned long long bid, size;
    int has;
    PyObject *tuple; /* the pure path's row tuple (owned), NULL through the C API */
} RowView;

/* The table operations of the loop, through the C API when c->fast, else the table's methods. A slot is
 * held both as a C integer and (methods only) as the int object the table gave, passed back as it was. */

/* find(0, dev, bid): the slot, -1: none, -2: error; *so: the slot's int (methods, a live slot), else NULL */
static long long t_find(Ctx *c, PyObject *o_dev, PyObject *o_bid, long long dev, unsigned long long bid,
                        PyObject **so) {
    *so = NULL;
    if (c->fast) return table_api->find(c->table, 0, (int32_t)dev, (uint64_t)bid);
    PyObject *fa[3] = {small[0], o_dev, o_bid};
    PyObject *r = tcall(c, s_find, fa, 3);
    long long s = slot_of(r);
    if (s >= 0)
        *so = r;
    else
        Py_XDECREF(r);
    return s;
}

/* row(slot): 1 a row the loop takes, 0 one it leaves to the reference, -1 error */
static int t_row(Ctx *c, long long s, PyObject *so, RowView *v) {
    v->tuple = NULL;
    if (c->fast) {
        ApiRow r;
        if (table_api->get(c->table, (uint32_t)s, &r) < 0) return -1;
        v->dev = r.device;
        v->bid = r.bid;
        v->bt = r.type;
        v->size = r.size;
        v->pid = r.pid;
        v->refs = r.refs;
        v->has = r.strings;
        return v->bt <= 4;
    }
    PyObject *row = tcall(c, s_row, &so, 1);
    if (row == NULL) return -1;
    int plain = row_plain(row, &v->dev, &v->bid, &v->bt, &v->size, &v->pid, &v->refs, &v->has);
    if (!plain) {
        Py_DECREF(row);
        return PyErr_Occurred() ? -1 : 0;
    }
    v->tuple = row;
    return 1;
}

static int t_set_refs(Ctx *c, long long s, PyObject *so, long long refs) {
    if (c->fast) return table_api->set_refs(c->table, (uint32_t)s, (uint32_t)refs);
    PyObject *ro = PyLong_FromLongLong(refs);
    PyObject *sa[2] = {so, ro};
    PyObject *x = ro ? tcall(c, s_set_refs, sa, 2) : NULL;
    Py_XDECREF(ro);
    Py_XDECREF(x);
    return x == NULL ? -1 : 0;
}

static int t_remove(Ctx *c, long long s, PyObject *so) {
    if (c->fast) return table_api->remove(c->table, (uint32_t)s);
    PyObject *x = tcall(c, s_remove, &so, 1);
    Py_XDECREF(x);
    return x == NULL ? -1 : 0;
}

/* add(dev, bid, bt, size, pid, 1, ts, seq, False): 0 added, 1 a value the table cannot hold, -1 error */
static int t_add(Ctx *c, PyObject *const o[5], long long dev, unsigned long long bid, long long bt,
                 unsigned long long size, long long pid, PyObject *ts_obj, long long ts, unsigned long long seq) {
    int rc;
    if (c->fast) {
        ApiRow r = {(uint64_t)bid, (uint64_t)size, (uint64_t)seq, (int64_t)ts, (int32_t)dev, (int32_t)pid, 1,
                    (uint8_t)bt, 0};
        rc = table_api->add(c->table, &r) < 0 ? -1 : 0;
    } else {
        PyObject *sq = PyLong_FromUnsignedLongLong(seq);
        if (sq == NULL) return -1;
        PyObject *aa[9] = {o[0], o[1], o[2], o[3], o[4], small[1], ts_obj, sq, Py_False};
        PyObject *x = tcall(c, s_add, aa, 9);
        Py_DECREF(sq);
        rc = x == NULL ? -1 : 0;
        Py_XDECREF(x);
    }
    if (rc < 0 && (PyErr_ExceptionMatches(PyExc_OverflowError) || PyErr_ExceptionMatches(PyExc_TypeError))) {
        PyErr_Clear();
        return 1;
    }
    return rc;
}

static int is_wire(PyObject *m) {
    PyObject *t = (PyObject *)Py_TYPE(m);
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(wire_classes); i++)
        if (PyTuple_GET_ITEM(wire_classes, i) == t) return 1;
    return 0;
}

static int add_attr(PyObject *obj, PyObject *name, long long delta) {
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

static PyObject *apply_wire(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (!ready) {
        PyErr_SetString(PyExc_RuntimeError, "ingest.setup() was not called");
        return NULL;
    }
    if (nargs != 11) {
        PyErr_SetString(PyExc_TypeError, "apply_wire takes 11 arguments");
        return NULL;
    }
    PyObject *reg = args[0], *msgs = args[1], *ok_pid_obj = args[6];
    if (!PyList_CheckExact(msgs)) {
        PyErr_SetString(PyExc_TypeError, "msgs must be a list");
        return NULL;
    }
    Py_ssize_t start = PyLong_AsSsize_t(args[2]);
    long long ts = PyLong_AsLongLong(args[3]);
    int pre_s5 = PyObject_IsTrue(args[4]);
    long long cap = PyLong_AsLongLong(args[5]);
    int frees_ok = PyObject_IsTrue(args[7]);
    long long inv_len = PyLong_AsLongLong(args[8]);
    int encode = PyObject_IsTrue(args[9]);
    long lines = PyLong_AsLong(args[10]);
    if (PyErr_Occurred()) return NULL;
    int checked = ok_pid_obj != Py_None;
    long long ok_pid = 0;
    if (checked && as_ll(ok_pid_obj, &ok_pid)) {
        if (PyErr_Occurred()) return NULL;
        ok_pid = (long long)INT32_MAX + 1; /* matches no message */
    }
    Py_ssize_t n = PyList_GET_SIZE(msgs);
    if (start < 0) start = 0;

    Ctx c = {NULL};
    PyObject *seq_obj = NULL, *ts_obj = NULL, *result = NULL;
    Out ev = {NULL, 0, 0}, ln = {NULL, 0, 0};
    Py_ssize_t nlines = 0, i = start;
    PyObject *cur = NULL; /* the message being applied */
    long long applied = 0, unknown = 0, unstorable = 0, live = 0;
    unsigned long long seq = 0, seq0 = 0;
    int failed = 1;

    seq_obj = PyObject_GetAttr(reg, s_seq);
    if (seq_obj == NULL) goto out;
    if (as_ull(seq_obj, &seq)) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "registry.seq is not an int");
        goto out;
    }
    seq0 = seq;
    c.table = PyObject_GetAttr(reg, s_t);
    c.fast = c.table != NULL && table_api != NULL && Py_TYPE(c.table) == table_api->type;
    c.counts = c.table ? PyObject_GetAttr(reg, s_counts) : NULL;
    c.usage = c.counts ? PyObject_GetAttr(reg, s_usage) : NULL;
    if (c.usage == NULL) goto out;
    if (!PyDict_Check(c.usage)) {
        PyErr_SetString(PyExc_TypeError, "registry._usage is not a dict");
        goto out;
    }
    if (cap > 0 && (live = PyObject_Length(c.table)) < 0) goto out;
    if ((ts_obj = PyLong_FromLongLong(ts)) == NULL) goto out;
    if (encode && out_reserve(&ev, (size_t)(n > start ? n - start : 1) * EVENT_SIZE)) goto out;

    for (; i < n && i < PyList_GET_SIZE(msgs); i++) {
        PyObject *m = PyList_GET_ITEM(msgs, i);
        Py_XSETREF(cur, Py_NewRef(m)); /* its fields are used across table calls (Python code, with a pure table) */
        if (!is_wire(m) || PyTuple_GET_SIZE(m) < 6) break;
        PyObject *o_dev = PyTuple_GET_ITEM(m, 1), *o_size = PyTuple_GET_ITEM(m, 2), *o_bt = PyTuple_GET_ITEM(m, 3);
        PyObject *o_pid = PyTuple_GET_ITEM(m, 4), *o_bid = PyTuple_GET_ITEM(m, 5);
        long long t, dev, bt, pid;
        unsigned long long size, bid;
        int r;
        if ((r = as_ll(PyTuple_GET_ITEM(m, 0), &t)) || (r = as_ll(o_dev, &dev)) || (r = as_ull(o_size, &size)) ||
            (r = as_ll(o_bt, &bt)) || (r = as_ll(o_pid, &pid)) || (r = as_ull(o_bid, &bid))) {
            if (r < 0) goto out;
            break;
        }
        if (dev < INT32_MIN || dev > INT32_MAX || pid < INT32_MIN || pid > INT32_MAX || bt < 0 || bt > 255) break;
        if (t == 1) {
            if (!(dev >= 0 && dev < max_devices && bt <= 4 && (pre_s5 || (size > 0 && size <= max_size)))) break;
            if (cap > 0 && live >= cap) break;
            if (checked && pid != ok_pid) break;
        } else if (t == 2) {
            if (bt == 5 || bt == 6) break; /* a FREE in the CB / kernel space */
            if (checked && !frees_ok) break;
        } else {
            break;
        }
        if (inv_len >= 0 && dev >= inv_len) break;

        PyObject *so; /* the slot's int (methods only) */
        long long s = t_find(&c, o_dev, o_bid, dev, bid, &so);
        if (s == -2) goto out;
        int kind;
        long long e_pid = pid, e_dev = dev, e_bt = bt, refs = 0;
        unsigned long long e_bid = bid, e_size = size;
        if (t == 1) {
            if (s >= 0) {
                RowView v;
                int plain = t_row(&c, s, so, &v);
                Py_XDECREF(v.tuple);
                if (plain <= 0) {
                    Py_XDECREF(so);
                    if (plain < 0) goto out;
                    break;
                }
                refs = v.refs + 1 < U32MAX ? v.refs + 1 : U32MAX;
                int x = t_set_refs(&c, s, so, refs);
                Py_XDECREF(so);
                if (x < 0) goto out;
                kind = K_REF_INC;
                e_bt = v.bt;
            } else {
                kind = K_ALLOC;
                refs = 1;
                PyObject *const ao[5] = {o_dev, o_bid, o_bt, o_size, o_pid};
                int x = t_add(&c, ao, dev, bid, bt, size, pid, ts_obj, ts, seq + 1);
                if (x < 0) goto out;
                if (x > 0) {
                    unstorable++;
                } else {
                    if (item_add(c.counts, 0, small[1]) < 0 || account(&c, o_dev, (long)bt, o_size, o_pid, +1) < 0)
                        goto out;
                    live++;
                }
            }
        } else if (s < 0) {
            kind = K_FREE_UNKNOWN;
            e_bt = 0;
            unknown++;
        } else {
            RowView v;
            int plain = t_row(&c, s, so, &v);
            if (plain <= 0 || (v.has && v.refs - 1 <= 0)) { /* a named entry's FREE carries its name: the reference's */
                if (plain > 0) Py_XDECREF(v.tuple);
                Py_XDECREF(so);
                if (plain < 0) goto out;
                break;
            }
            refs = v.refs - 1;
            int x;
            if (refs > 0) {
                x = t_set_refs(&c, s, so, refs);
                kind = K_REF_DEC;
            } else {
                /* the row's own objects for the accounting (the pure path's), new ints through the C API */
                PyObject *r_dev = v.tuple ? Py_NewRef(PyTuple_GET_ITEM(v.tuple, 0)) : PyLong_FromLongLong(v.dev);
                PyObject *r_size = v.tuple ? Py_NewRef(PyTuple_GET_ITEM(v.tuple, 3)) : PyLong_FromUnsignedLongLong(v.size);
                PyObject *r_pid = v.tuple ? Py_NewRef(PyTuple_GET_ITEM(v.tuple, 4)) : PyLong_FromLongLong(v.pid);
                x = r_dev && r_size && r_pid ? t_remove(&c, s, so) : -1;
                if (x == 0 && (item_add(c.counts, 0, minus_one) < 0 ||
                               account(&c, r_dev, (long)v.bt, r_size, r_pid, -1) < 0))
                    x = -1;
                Py_XDECREF(r_dev);
                Py_XDECREF(r_size);
                Py_XDECREF(r_pid);
                refs = 0;
                kind = K_FREE;
                live--;
            }
            Py_XDECREF(v.tuple);
            Py_XDECREF(so);
            if (x < 0) goto out;
            e_pid = v.pid;
            e_dev = v.dev;
            e_bt = v.bt;
            e_bid = v.bid;
            e_size = v.size;
        }
        seq++;
        applied++;
        if (encode) put_event(&ev, seq, ts, kind, e_pid, e_dev, e_bt, e_bid, e_size, refs);
        if (lines) {
            if (put_line(&ln, kind, e_pid, e_dev, e_bt, e_bid, e_size, refs, lines == 1)) goto out;
            nlines++;
        }
    }
    failed = 0;
out:
    /* the counters go back into the registry whatever happened (the table calls made stay made) */
    if (seq_obj != NULL && seq != seq0) {
        PyObject *sq = PyLong_FromUnsignedLongLong(seq);
        PyObject *et = NULL, *evl = NULL, *tb = NULL;
        if (failed) PyErr_Fetch(&et, &evl, &tb);
        if (sq == NULL || PyObject_SetAttr(reg, s_seq, sq) < 0 || add_attr(reg, s_messages, applied) < 0 ||
            add_attr(reg, s_unknown, unknown) < 0 || add_attr(reg, s_unstorable, unstorable) < 0) {
            failed = 1;
            Py_XDECREF(et);
            Py_XDECREF(evl);
            Py_XDECREF(tb);
        } else if (failed) {
            PyErr_Restore(et, evl, tb);
        }
        Py_XDECREF(sq);
    }
    if (!failed) {
        PyObject *evb = encode ? PyBytes_FromStringAndSize(ev.len ? ev.p : "", (Py_ssize_t)ev.len) : Py_NewRef(Py_None);
        PyObject *lnb = lines ? PyBytes_FromStringAndSize(ln.len ? ln.p : "", (Py_ssize_t)ln.len) : Py_NewRef(Py_None);
        if (evb != NULL && lnb != NULL) result = Py_BuildValue("(nOOn)", i, evb, lnb, nlines);
        Py_XDECREF(evb);
        Py_XDECREF(lnb);
    }
    Py_XDECREF(cur);
    PyMem_Free(ev.p);
    PyMem_Free(ln.p);
    Py_XDECREF(seq_obj);
    Py_XDECREF(ts_obj);
    Py_XDECREF(c.table);
    Py_XDECREF(c.counts);
    Py_XDECREF(c.usage);
    return result;
}

/* ------------------------------------------------------------------------------------------ module */

static PyMethodDef methods[] = {
    {"setup", setup, METH_VARARGS, "setup(DeviceUsage, wire_classes, event_format, max_devices, max_size)"},
    {"apply_wire", (PyCFunction)(void (*)(void))apply_wire, METH_FASTCALL,
     "apply_wire(registry, msgs, start, ts, pre_s5, cap, alloc_ok_pid, frees_ok, inv_len, encode, lines)"
     " -> (next, events | None, lines | None, nlines)"},
    {"render_lines", render_lines, METH_VARARGS,
     "render_lines(items, hex_ids=True) -> (bytes, count) | None: the original's per-event log lines"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "tt_memtop._native.ingest",
                                    "The server's apply path, compiled (see ingest.c).", -1, methods};

PyMODINIT_FUNC PyInit_ingest(void) {
    const uint16_t one = 1;
    if (*(const unsigned char *)&one != 1) {
        PyErr_SetString(PyExc_ImportError, "tt_memtop._native.ingest assumes a little-endian host");
        return NULL;
    }
#define INTERN(var, name) \
    if ((var = PyUnicode_InternFromString(name)) == NULL) return NULL
    INTERN(s_kind, "kind");
    INTERN(s_pid, "pid");
    INTERN(s_size, "size");
    INTERN(s_buffer_type, "buffer_type");
    INTERN(s_device, "device");
    INTERN(s_buffer_id, "buffer_id");
    INTERN(s_ref_count, "ref_count");
    INTERN(s_t, "_t");
    INTERN(s_counts, "_counts");
    INTERN(s_usage, "_usage");
    INTERN(s_seq, "seq");
    INTERN(s_messages, "messages");
    INTERN(s_unknown, "unknown_frees");
    INTERN(s_unstorable, "unstorable");
    INTERN(s_find, "find");
    INTERN(s_row, "row");
    INTERN(s_add, "add");
    INTERN(s_remove, "remove");
    INTERN(s_set_refs, "set_refs");
    if ((small[0] = PyLong_FromLong(0)) == NULL || (small[1] = PyLong_FromLong(1)) == NULL ||
        (minus_one = PyLong_FromLong(-1)) == NULL)
        return NULL;
    return PyModule_Create(&module);
}
