/* table.c's C API: the compiled registry table's find / get / add / remove / set_refs without a Python
 * method call or a row tuple. table.c fills a TableApi and publishes it as the capsule
 * "tt_memtop._native.table.api"; mirror.c (a monitor's apply_batch) and ingest.c (the server's
 * apply_wire) load it with load_table_api() and use it when a registry holds that Table type, going
 * through the table's methods otherwise (a pure table, a subclass). A change of ApiRow or TableApi
 * bumps TABLE_API_VERSION: a module built against another version ignores the capsule. */
#ifndef TT_MEMTOP_TABLE_API_H
#define TT_MEMTOP_TABLE_API_H

#include <Python.h>
#include <stdint.h>

#define TABLE_API_VERSION 1
#define TABLE_API_CAPSULE "tt_memtop._native.table.api"

typedef struct {
    uint64_t bid, size, seq;
    int64_t ts;
    int32_t device, pid;
    uint32_t refs;
    uint8_t type, strings; /* strings: the entry has a name or stack trace (in the registry's dict) */
} ApiRow;

typedef struct {
    int version;
    size_t row_size;
    PyTypeObject *type;
    int64_t (*find)(PyObject *t, unsigned space, int32_t device, uint64_t bid); /* slot, -1: none, -2: error */
    int (*get)(PyObject *t, uint32_t slot, ApiRow *out);                        /* 0, -1: error (no live row) */
    int64_t (*add)(PyObject *t, const ApiRow *r);                               /* slot, -1: error */
    int (*remove)(PyObject *t, uint32_t slot);                                  /* 0, -1: error */
    int (*set_refs)(PyObject *t, uint32_t slot, uint32_t refs);                 /* 0, -1: error */
} TableApi;

/* The compiled table's API, or NULL (no compiled table, or one of another version: every table then goes
 * through its methods). Clears the import error it may meet. */
static inline const TableApi *load_table_api(void) {
    PyObject *mod = PyImport_ImportModule("tt_memtop._native.table");
    PyObject *cap = mod ? PyObject_GetAttrString(mod, "api") : NULL;
    const TableApi *api = cap ? PyCapsule_GetPointer(cap, TABLE_API_CAPSULE) : NULL;
    Py_XDECREF(mod);
    Py_XDECREF(cap);
    if (api == NULL) {
        PyErr_Clear();
        return NULL;
    }
    return api->version == TABLE_API_VERSION && api->row_size == sizeof(ApiRow) ? api : NULL;
}

#endif
