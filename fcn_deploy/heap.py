"""The process's heap: memory freed inside the process handed back to the system."""

from __future__ import annotations

import ctypes
import sys


def return_freed_heap() -> None:
    """Hand memory freed inside the process back to the system (glibc's ``malloc_trim``; a no-op elsewhere).

    glibc keeps freed pages resident: after its first large free it serves blocks of up to 32 MB from the heap,
    so what a decoder or a runtime frees stays in the process's RSS until trimmed.
    """
    if not sys.platform.startswith("linux"):
        return
    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)  # absent on C libraries other than glibc
    if trim is not None:
        trim(0)


__all__ = ["return_freed_heap"]
