"""Give the free pages of the C heap back to the OS after a bulk load (glibc's ``malloc_trim``).

Why: loading a million-buffer snapshot grows columns and hash tables by doubling; each step frees
the smaller copy into the middle of glibc's heap, where it stays resident once later allocations
sit above it. In pure Python that is ~50 MB of a monitor's RSS at 1 M live buffers that nothing
uses (docs/MEMORY_MODEL.md, "Cost"). ``malloc_trim(0)`` returns those pages; it changes no data.
A no-op where the C library has no ``malloc_trim`` (musl, macOS) or ctypes is missing.
"""

from __future__ import annotations

__all__ = ["give_back_free_heap"]

_trim = None  # the C function once looked up; False: not available


def give_back_free_heap() -> bool:
    """Return the heap's free pages to the OS; True if the C library could be asked."""
    global _trim
    if _trim is None:
        try:
            import ctypes

            _trim = ctypes.CDLL(None).malloc_trim
            _trim.argtypes = [ctypes.c_size_t]
            _trim.restype = ctypes.c_int
        except (ImportError, OSError, AttributeError):
            _trim = False
    if _trim is False:
        return False
    _trim(0)
    return True
