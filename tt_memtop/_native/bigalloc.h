/* bigalloc.h: large arrays straight from the OS, for the compiled tables that grow by rehashing.
 *
 * A table that grows into a new array frees the old one, and glibc keeps a freed chunk of the heap's
 * middle resident (the growth steps of a million-entry table were ~27 MB of RSS nobody used): from
 * BIG_MIN bytes on, mmap / munmap (zero-filled, given back at once); below it, or without mmap, the
 * Python allocator. Included by phases.c and leaks.c (each extension module its own static copy). */
#ifndef TT_MEMTOP_BIGALLOC_H
#define TT_MEMTOP_BIGALLOC_H

#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#define BIG_MMAP 1
#endif
#define BIG_MIN ((size_t)256 * 1024)

static void *big_calloc(size_t n, size_t size) {
    size_t bytes = n * size;
#ifdef BIG_MMAP
    if (bytes >= BIG_MIN) {
        void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        return p == MAP_FAILED ? NULL : p; /* zero-filled */
    }
#endif
    return PyMem_Calloc(n, size);
}
static void big_free(void *p, size_t n, size_t size) {
    if (p == NULL) return;
#ifdef BIG_MMAP
    if (n * size >= BIG_MIN) {
        munmap(p, n * size);
        return;
    }
#endif
    PyMem_Free(p);
}

#endif
