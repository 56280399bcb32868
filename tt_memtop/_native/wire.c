/* tt_memtop._native.wire: the server's frame decoder for whole chunks, compiled (the apply path is ingest.c).
 *
 * The exact twin of a pure-Python function (the tests run both on the same input):
 *
 *   decode_whole(buf, layout, cls) -> list | None
 *       framing.FrameReader._run_whole's checks and protocol.decode_frames in one pass: every whole
 *       frame of a fixed-size layout (72, 112, 128, 144) at the start of buf must have a known type
 *       byte, zero pads, and no original type byte (1-12) where a smaller layout's frame would
 *       begin; then each frame becomes one ``cls`` (a tuple subclass, protocol.WIRE_CLASSES[layout])
 *       of the layout's fields in wire order. None when a frame fails a check (the caller then
 *       frames the chunk one frame at a time).
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

/* ------------------------------------------------------------------------------------------ module */

static PyMethodDef methods[] = {
    {"decode_whole", decode_whole, METH_VARARGS,
     "decode_whole(buf, layout, cls) -> list | None: every whole frame of a fixed layout, checked and decoded"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "tt_memtop._native.wire",
                                    "The server's whole-chunk frame decoder, compiled (see wire.c).", -1, methods};

PyMODINIT_FUNC PyInit_wire(void) {
    const uint16_t one = 1;
    if (*(const unsigned char *)&one != 1) {
        PyErr_SetString(PyExc_ImportError, "tt_memtop._native.wire assumes a little-endian host");
        return NULL;
    }
    return PyModule_Create(&module);
}
