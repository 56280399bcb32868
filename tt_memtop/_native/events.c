/* Batch decode of EVENTS record bodies (tt_memtop.core.eventcodec), in C.
 *
 * The pure-Python decoder makes each Event with struct.unpack_from plus a keyword call: ~2.5 us per
 * event, more than the rest of a monitor's fold. This module builds the same Event objects straight
 * from the bytes: it allocates them through the type and sets their slots through the type's own
 * member descriptors, so the objects are exactly what Event(...) makes.
 *
 * The events are not tracked by the cyclic collector (see below): that is the one difference, and
 * it is invisible (they cannot be part of a cycle).
 *
 * Behaviour is the pure path's, byte for byte: the same checks in the same order, the same
 * CodecError messages, UTF-8 strings decoded with "replace". Every length is checked against the
 * buffer before it is read; no input makes it read out of bounds.
 *
 *   setup(Event, kinds, CodecError, entry_kinds, ntypes, max_devices)   once, from eventcodec
 *   decode_events_body(buffer, offset) -> list[Event]
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <limits.h>
#include <string.h>
#include <structmember.h>

#define EVENT_SIZE 52 /* "<QqBiiBQQIHHH" */
#define NSLOTS 12

static const char *SLOT_NAMES[NSLOTS] = {"seq", "ts_ns", "kind", "pid", "device", "buffer_type", "buffer_id",
                                          "size", "ref_count", "name", "stack_trace", "text"};
enum { S_SEQ, S_TS, S_KIND, S_PID, S_DEV, S_BT, S_BID, S_SIZE, S_REFS, S_NAME, S_TRACE, S_TEXT };

static PyTypeObject *event_type = NULL;
static PyObject *slot_descr[NSLOTS];
static Py_ssize_t slot_off[NSLOTS]; /* byte offset of each slot in an Event (from its member descriptor) */
static PyObject *kind_objs[256];     /* EventKind member by value, NULL if none */
static unsigned char entry_kind[256]; /* kinds whose buffer_type / device are checked */
static PyObject *kind_names[256];
static PyObject *codec_error = NULL;
static PyObject *empty_str = NULL;
static long ntypes = 7, max_devices = 256;

static inline uint16_t rd16(const unsigned char *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t rd32(const unsigned char *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t rd64(const unsigned char *p) { return (uint64_t)rd32(p) | ((uint64_t)rd32(p + 4) << 32); }

static PyObject *setup(PyObject *self, PyObject *args) {
    PyObject *type, *kinds, *err, *entries;
    if (!PyArg_ParseTuple(args, "O!O!OOll", &PyType_Type, &type, &PyDict_Type, &kinds, &err, &entries, &ntypes,
                          &max_devices))
        return NULL;
    if (((PyTypeObject *)type)->tp_itemsize != 0) {
        PyErr_SetString(PyExc_TypeError, "Event must be a fixed-size slots class");
        return NULL;
    }
    PyObject *descrs[NSLOTS];
    for (int i = 0; i < NSLOTS; i++) {
        descrs[i] = PyObject_GetAttrString(type, SLOT_NAMES[i]);
        /* only a plain object slot (T_OBJECT_EX member) may be stored into directly */
        if (descrs[i] == NULL || Py_TYPE(descrs[i]) != &PyMemberDescr_Type ||
            ((PyMemberDescrObject *)descrs[i])->d_member->type != T_OBJECT_EX ||
            ((PyMemberDescrObject *)descrs[i])->d_member->flags & READONLY) {
            for (int j = 0; j <= i; j++) Py_XDECREF(descrs[j]);
            if (!PyErr_Occurred()) PyErr_Format(PyExc_TypeError, "Event.%s is not a slot", SLOT_NAMES[i]);
            return NULL;
        }
    }
    memset(entry_kind, 0, sizeof entry_kind);
    PyObject *it = PyObject_GetIter(entries);
    if (it == NULL) goto fail;
    PyObject *item;
    while ((item = PyIter_Next(it)) != NULL) {
        long v = PyLong_AsLong(item);
        Py_DECREF(item);
        if (v == -1 && PyErr_Occurred()) break;
        if (v >= 0 && v < 256) entry_kind[v] = 1;
    }
    Py_DECREF(it);
    if (PyErr_Occurred()) goto fail;
    for (int i = 0; i < 256; i++) {
        Py_CLEAR(kind_objs[i]);
        Py_CLEAR(kind_names[i]);
    }
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(kinds, &pos, &key, &value)) {
        long v = PyLong_AsLong(key);
        if (v == -1 && PyErr_Occurred()) goto fail;
        if (v < 0 || v > 255) continue;
        PyObject *name = PyObject_GetAttrString(value, "name");
        if (name == NULL) goto fail;
        Py_INCREF(value);
        kind_objs[v] = value;
        kind_names[v] = name;
    }
    for (int i = 0; i < NSLOTS; i++) {
        Py_XSETREF(slot_descr[i], descrs[i]);
        slot_off[i] = ((PyMemberDescrObject *)descrs[i])->d_member->offset;
    }
    Py_INCREF(type);
    Py_XSETREF(event_type, (PyTypeObject *)type);
    Py_INCREF(err);
    Py_XSETREF(codec_error, err);
    Py_RETURN_NONE;
fail:
    for (int j = 0; j < NSLOTS; j++) Py_XDECREF(descrs[j]);
    return NULL;
}

/* Ints that repeat from event to event (a process's pid, the sizes a model allocates over and over) are
 * shared, not made anew for each event: a small direct-mapped cache of int objects by value. An int is
 * immutable, so a shared one is indistinguishable from a fresh one of the same value. */
#define ICACHE 256
typedef struct {
    PyObject *obj[ICACHE];
    uint64_t val[ICACHE];
} IntCache;
static IntCache pid_cache, size_cache;

static inline PyObject *cached_int(IntCache *c, uint64_t v, int is_signed) {
    unsigned i = (unsigned)((v * 0x9E3779B97F4A7C15ull) >> 56);
    if (c->obj[i] != NULL && c->val[i] == v) return Py_NewRef(c->obj[i]);
    PyObject *n = is_signed ? PyLong_FromLongLong((int64_t)v) : PyLong_FromUnsignedLongLong(v);
    if (n == NULL) return NULL;
    Py_XSETREF(c->obj[i], Py_NewRef(n));
    c->val[i] = v;
    return n;
}

/* Give ``v`` (a new reference, or NULL: an error already set) to the empty slot ``i`` of the fresh ``ev``. */
static inline int put(PyObject *ev, int i, PyObject *v) {
    if (v == NULL) return -1;
    *(PyObject **)((char *)ev + slot_off[i]) = v;
    return 0;
}

static PyObject *text_at(const unsigned char *p, Py_ssize_t n) {
    if (n == 0) {
        Py_INCREF(empty_str);
        return empty_str;
    }
    return PyUnicode_DecodeUTF8((const char *)p, n, "replace");
}

static PyObject *decode_events_body(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t off = 0;
    if (!PyArg_ParseTuple(args, "y*|n", &view, &off)) return NULL;
    if (event_type == NULL) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_RuntimeError, "tt_memtop._native.events: setup() was not called");
        return NULL;
    }
    const unsigned char *buf = (const unsigned char *)view.buf;
    Py_ssize_t len = view.len;
    PyObject *out = NULL;
    if (off < 0 || off > len || len - off < 4) {
        PyErr_Format(codec_error, "record truncated: need 4 bytes at offset %zd, have %zd", off, len - off);
        goto done;
    }
    uint32_t count = rd32(buf + off);
    off += 4;
    out = PyList_New(0); /* grown as events are read: the count is never trusted for an allocation */
    if (out == NULL) goto done;
    for (uint32_t n = 0; n < count; n++) {
        if (len - off < EVENT_SIZE) {
            PyErr_Format(codec_error, "record truncated: need %d bytes at offset %zd, have %zd", EVENT_SIZE, off,
                         len - off);
            goto fail;
        }
        const unsigned char *p = buf + off;
        uint64_t seq = rd64(p);
        int64_t ts = (int64_t)rd64(p + 8);
        unsigned kind = p[16];
        int32_t pid = (int32_t)rd32(p + 17);
        int32_t dev = (int32_t)rd32(p + 21);
        unsigned bt = p[25];
        uint64_t bid = rd64(p + 26);
        uint64_t size = rd64(p + 34);
        uint32_t refs = rd32(p + 42);
        Py_ssize_t ln = rd16(p + 46), lt = rd16(p + 48), lx = rd16(p + 50);
        off += EVENT_SIZE;
        PyObject *name = NULL, *trace = NULL, *text = NULL;
        if (ln || lt || lx) {
            /* the pure path checks each string in turn: name, then trace, then text */
            if (off + ln > len || off + ln + lt > len || off + ln + lt + lx > len) {
                PyErr_SetString(codec_error, "string runs past the end of the record");
                goto fail;
            }
            name = text_at(buf + off, ln);
            trace = name ? text_at(buf + off + ln, lt) : NULL;
            text = trace ? text_at(buf + off + ln + lt, lx) : NULL;
            if (text == NULL) {
                Py_XDECREF(name);
                Py_XDECREF(trace);
                goto fail;
            }
            off += ln + lt + lx;
        }
        PyObject *k = kind_objs[kind];
        if (k == NULL) {
            Py_XDECREF(name);
            Py_XDECREF(trace);
            Py_XDECREF(text);
            PyErr_Format(codec_error, "unknown event kind %u", kind);
            goto fail;
        }
        if (entry_kind[kind] && ((long)bt >= ntypes || !(-1 <= dev && dev < max_devices))) {
            Py_XDECREF(name);
            Py_XDECREF(trace);
            Py_XDECREF(text);
            PyErr_Format(codec_error,
                         "%U event with buffer_type %u on device %d (expected buffer_type 0..%ld, device -1..%ld)",
                         kind_names[kind], bt, (int)dev, ntypes - 1, max_devices - 1);
            goto fail;
        }
        PyObject *ev = event_type->tp_alloc(event_type, 0);
        if (ev == NULL) {
            Py_XDECREF(name);
            Py_XDECREF(trace);
            Py_XDECREF(text);
            goto fail;
        }
        Py_INCREF(k);
        if (name == NULL) {
            Py_INCREF(empty_str);
            Py_INCREF(empty_str);
            Py_INCREF(empty_str);
            name = trace = text = empty_str;
        }
        int bad = put(ev, S_SEQ, PyLong_FromUnsignedLongLong(seq)) | put(ev, S_TS, PyLong_FromLongLong(ts)) |
                  put(ev, S_KIND, k) | put(ev, S_PID, cached_int(&pid_cache, (uint64_t)(int64_t)pid, 1)) | put(ev, S_DEV, PyLong_FromLong(dev)) |
                  put(ev, S_BT, PyLong_FromLong((long)bt)) | put(ev, S_BID, PyLong_FromUnsignedLongLong(bid)) |
                  put(ev, S_SIZE, cached_int(&size_cache, size, 0)) |
                  put(ev, S_REFS, PyLong_FromUnsignedLong(refs)) | put(ev, S_NAME, name) |
                  put(ev, S_TRACE, trace) | put(ev, S_TEXT, text);
        /* Its slots hold only ints, strs and an EventKind: an Event can be in no reference cycle. Leaving
         * it to the collector would have every young collection scan the hundreds of thousands a
         * monitor's feed ring holds (CPython untracks tuples of atoms the same way). */
        if (PyObject_GC_IsTracked(ev)) PyObject_GC_UnTrack(ev);
        if (bad || PyList_Append(out, ev) < 0) {
            Py_DECREF(ev);
            goto fail;
        }
        Py_DECREF(ev);
    }
    goto done;
fail:
    Py_CLEAR(out);
done:
    PyBuffer_Release(&view);
    return out;
}

static PyMethodDef methods[] = {
    {"setup", setup, METH_VARARGS, "setup(Event, kinds, CodecError, entry_kinds, ntypes, max_devices)"},
    {"decode_events_body", decode_events_body, METH_VARARGS,
     "decode_events_body(buffer, offset=0) -> list[Event]: the events of an EVENTS record body"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "events", "Batch decode of EVENTS record bodies.", -1,
                                    methods};

PyMODINIT_FUNC PyInit_events(void) {
    empty_str = PyUnicode_New(0, 0);
    if (empty_str == NULL) return NULL;
    return PyModule_Create(&module);
}
