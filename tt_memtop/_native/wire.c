/* tt_memtop._native.wire: the server's per-message hot path, compiled.
 *
 * Two functions, each the exact twin of a pure-Python one (the tests run both on the same input):
 *
 *   decode_whole(buf, layout, cls) -> list | None
 *       framing.FrameReader._run_whole's checks and protocol.decode_frames in one pass: every whole
 *       frame of a fixed-size layout (72, 112, 128, 144) at the start of buf must have a known type
 *       byte, zero pads, and no original type byte (1-12) where a smaller layout's frame would
 *       begin; then each frame becomes one ``cls`` (a tuple subclass, protocol.WIRE_CLASSES[layout])
 *       of the layout's fields in wire order. None when a frame fails a check (the caller then
 *       frames the chunk one frame at a time).
 *
 *   render_lines(items, hex_ids) -> (bytes, count) | None
 *       logformat.render_lines: each item a str (copied) or a buffer Event (the original's alloc /
 *       free / unknown-free line). None when an item is something it does not handle exactly as the
 *       pure function does (a value out of range, a str that is not valid UTF-8...): the caller then
 *       uses the pure function.
 *
 * Plain C11 and the CPython C API; every length is checked, nothing is read outside the buffer.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------ decode */

static inline uint64_t rd_u64(const unsigned char *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v; /* little-endian host (x86-64, aarch64): checked at module init */
}
static inline uint32_t rd_u32(const unsigned char *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline int known_type(unsigned char t) { return (t >= 1 && t <= 12) || (t >= 64 && t <= 66); }
static inline int original_type(unsigned char t) { return t >= 1 && t <= 12; }

/* number of fields of each layout's tuple (protocol.WIRE_FIELDS) */
static int nfields(Py_ssize_t layout) {
    switch (layout) {
        case 72: return 11;
        case 112: return 19;
        case 128: return 21;
        case 144: return 24;
        default: return -1;
    }
}

static int frame_ok(const unsigned char *p, Py_ssize_t layout) {
    if (!known_type(p[0])) return 0;
    if (p[1] | p[2] | p[3] | p[17] | p[18] | p[19]) return 0;
    if (layout == 144 && (p[140] | p[141] | p[142] | p[143])) return 0;
    if (layout > 72 && original_type(p[72])) return 0;
    if (layout > 112 && original_type(p[112])) return 0;
    if (layout > 128 && original_type(p[128])) return 0;
    return 1;
}

#define SET(i, expr)                      \
    do {                                  \
        PyObject *v_ = (expr);            \
        if (v_ == NULL) goto fail;        \
        PyTuple_SET_ITEM(t, (i), v_);     \
    } while (0)

static PyObject *make_frame(PyTypeObject *cls, const unsigned char *p, Py_ssize_t layout, int nf) {
    PyObject *t = cls->tp_alloc(cls, nf);
    if (t == NULL) return NULL;
    int i = 0;
    SET(i++, PyLong_FromLong(p[0]));
    SET(i++, PyLong_FromLong((int32_t)rd_u32(p + 4)));
    SET(i++, PyLong_FromUnsignedLongLong(rd_u64(p + 8)));
    SET(i++, PyLong_FromLong(p[16]));
    SET(i++, PyLong_FromLong((int32_t)rd_u32(p + 20)));
    SET(i++, PyLong_FromUnsignedLongLong(rd_u64(p + 24)));
    SET(i++, PyLong_FromUnsignedLongLong(rd_u64(p + 32)));
    int nq = (layout == 72 || layout == 112) ? 4 : 6; /* counters (+ cb, kernel) */
    for (int k = 0; k < nq; k++) SET(i++, PyLong_FromUnsignedLongLong(rd_u64(p + 40 + 8 * k)));
    if (layout != 72) {
        const unsigned char *q = p + 40 + 8 * nq;
        SET(i++, PyLong_FromUnsignedLongLong(rd_u64(q)));
        SET(i++, PyLong_FromUnsignedLongLong(rd_u64(q + 8)));
        for (int k = 0; k < 6; k++) SET(i++, PyLong_FromUnsignedLong(rd_u32(q + 16 + 4 * k)));
        if (layout == 144)
            for (int k = 0; k < 3; k++) SET(i++, PyLong_FromUnsignedLong(rd_u32(p + 128 + 4 * k)));
    }
    return t;
fail:
    Py_DECREF(t);
    return NULL;
}

static PyObject *decode_whole(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t layout;
    PyObject *cls;
    if (!PyArg_ParseTuple(args, "y*nO:decode_whole", &view, &layout, &cls)) return NULL;
    PyObject *out = NULL;
    int nf = nfields(layout);
    if (nf < 0) {
        PyErr_SetString(PyExc_ValueError, "layout must be 72, 112, 128 or 144");
        goto done;
    }
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "cls must be a tuple subclass");
        goto done;
    }
    const unsigned char *buf = view.buf;
    Py_ssize_t n = view.len / layout;
    for (Py_ssize_t k = 0; k < n; k++) {
        if (!frame_ok(buf + k * layout, layout)) {
            out = Py_NewRef(Py_None);
            goto done;
        }
    }
    out = PyList_New(n);
    if (out == NULL) goto done;
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *m = make_frame((PyTypeObject *)cls, buf + k * layout, layout, nf);
        if (m == NULL) {
            Py_CLEAR(out);
            goto done;
        }
        PyList_SET_ITEM(out, k, m);
    }
done:
    PyBuffer_Release(&view);
    return out;
}

/* ------------------------------------------------------------------------------------------ lines */

typedef struct {
    char *p;
    size_t len, cap;
} Out;

static int out_reserve(Out *o, size_t more) {
    if (o->len + more <= o->cap) return 0;
    size_t cap = o->cap ? o->cap : 4096;
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

static const char *const TYPE_NAMES[] = {"DRAM", "L1", "SYSTEM_MEMORY", "L1_SMALL", "TRACE"};

enum { K_ALLOC = 1, K_REF_INC = 2, K_REF_DEC = 3, K_FREE = 4, K_FREE_UNKNOWN = 5 };

/* 0: line appended (or nothing to print); 1: fall back; -1: error */
static int render_event(Out *o, PyObject *ev, int hex_ids, Py_ssize_t *count) {
    long long kind, pid, bt, dev, rc;
    unsigned long long size, bid;
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

/* ------------------------------------------------------------------------------------------ module */

static PyMethodDef methods[] = {
    {"decode_whole", decode_whole, METH_VARARGS,
     "decode_whole(buf, layout, cls) -> list | None: every whole frame of a fixed layout, checked and decoded"},
    {"render_lines", render_lines, METH_VARARGS,
     "render_lines(items, hex_ids=True) -> (bytes, count) | None: the original's per-event log lines"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "tt_memtop._native.wire",
                                    "The server's hot path, compiled (see wire.c).", -1, methods};

PyMODINIT_FUNC PyInit_wire(void) {
    const uint16_t one = 1;
    if (*(const unsigned char *)&one != 1) {
        PyErr_SetString(PyExc_ImportError, "tt_memtop._native.wire assumes a little-endian host");
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
    return PyModule_Create(&module);
}
