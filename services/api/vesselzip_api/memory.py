"""Keep the gateway's resident memory close to what its uploads need.

glibc raises its mmap threshold after large blocks are freed, so later volume-sized
arrays come from per-thread heaps that are never given back: with a few concurrent
uploads the resident size then creeps far above the live data. A fixed threshold keeps
every large array in its own mapping, returned to the system when freed."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("vesselzip.api")

_M_MMAP_THRESHOLD = -3  # from <malloc.h>
_THRESHOLD_BYTES = 128 * 1024


def release_large_arrays_promptly() -> bool:
    """Fix glibc's mmap threshold (a no-op elsewhere); returns whether it was set."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl, macOS)
        return False
    ok = bool(mallopt(_M_MMAP_THRESHOLD, _THRESHOLD_BYTES))
    log.debug("mallopt(M_MMAP_THRESHOLD, %d): %s", _THRESHOLD_BYTES, ok)
    return ok
