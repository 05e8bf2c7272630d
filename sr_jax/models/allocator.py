"""glibc malloc settings that keep big XLA buffers in the process for reuse.

XLA:CPU allocates each execution's temporaries afresh (with `malloc`). glibc
serves blocks over its mmap threshold (at most 32 MiB), and every block in a
worker thread's arena that outgrows the arena, with a fresh `mmap`, and gives
it back with `munmap` when freed. So every forward pass of a large model at a
large batch (VGG-16 at batch 8: ~180k pages) touches brand-new pages, and in
a virtual machine a first touch is expensive (about 4.6 us per 4 KiB page
measured here, against 0.03 us for reused memory): the cause of VGG-16 at
batch 8 being slower per image than at batch 1 (see benchmarks/README.md).

`keep_freed_memory` makes glibc take all memory from one heap and never hand
it back, so freed buffers are reused as they are. The price is that the
process's resident memory stays at its high-water mark. It must run before
JAX starts its thread pool (threads keep the arena they started with), so
`sr_jax.models` calls it on import unless `$SR_JAX_TUNE_MALLOC` is "0" or the
user already set glibc's own `MALLOC_*` or `GLIBC_TUNABLES` variables.
"""

from __future__ import annotations

import ctypes
import os
import sys

# mallopt parameter numbers from glibc's <malloc.h>.
M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8
ENV = "SR_JAX_TUNE_MALLOC"
_USER_ENV = ("MALLOC_ARENA_MAX", "MALLOC_MMAP_MAX_", "MALLOC_MMAP_THRESHOLD_",
             "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "GLIBC_TUNABLES")
_state = {"tuned": False}


def keep_freed_memory() -> bool:
  """Sets glibc's malloc to one arena, no mmap and no trimming.

  Equivalent to starting the process with `MALLOC_ARENA_MAX=1
  MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=-1`.

  Returns:
    True if the settings were applied (Linux with glibc), else False.
  """
  if not sys.platform.startswith("linux"):
    return False
  try:
    libc = ctypes.CDLL(None)
    mallopt = libc.mallopt
  except (OSError, AttributeError):
    return False
  mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
  ok = all(mallopt(param, value) == 1 for param, value in (
      (M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, -1)))
  _state["tuned"] = ok
  return ok


def tune_from_env() -> bool:
  """`keep_freed_memory()` unless `$SR_JAX_TUNE_MALLOC=0` or glibc is set up.

  Returns:
    Whether the settings were applied.
  """
  if os.environ.get(ENV, "1") == "0" or any(k in os.environ
                                             for k in _USER_ENV):
    return False
  return keep_freed_memory()


def is_tuned() -> bool:
  """Whether this process runs with `keep_freed_memory`'s settings."""
  return _state["tuned"]
