"""The process settings sr_jax applies when it is imported, before JAX starts.

`tune_from_env`, called first thing by `sr_jax/__init__.py` (the one
import-time hook), applies both kinds: glibc's malloc settings
(`tune_malloc_from_env`) and XLA:CPU's flags (`tune_xla_from_env`).

XLA:CPU flags:

* **YNNPACK for single dots only**
  (`--xla_cpu_experimental_ynn_fusion_type=individual_dot`). XLA:CPU's
  default also hands fused elementwise regions (a conv's bias, ReLU and
  max-pool) to YNNPACK on a second thread pool; on 2 cores that
  oversubscribes them (VGG-16 forward 0.80x the time at batch 1 without
  them, 2-core Xeon, benchmarks/README.md). Turning YNNPACK off altogether,
  this module's setting until 2026-12-02, has its own cost: Eigen then runs
  a dense layer's input gradient, `g @ W.T` with a few rows, 4-6x slower
  than YNNPACK (a 9216x4096 layer at batch 8: 58 against 13 ms), which made
  AlexNet's gradient at batch 8 1.3x torch's and DeepLIFT at batch 1 (a
  batch of two inside) 10x the gradient. YNNPACK's fused "dot" regions are
  no way out: there a chain of three dense layers with bias and ReLU took
  293 ms at batch 8 against 10 ms. Single dots on YNNPACK keep the fast
  input gradients and leave every fused region to XLA's own code
  (`benchmarks/README.md`, "YNNPACK and dense layers").
* **One CPU device per core** (`--xla_force_host_platform_device_count`,
  at most `MAX_CPU_DEVICES`; `configure_cpu(devices=N)` or
  `$SR_JAX_CPU_DEVICES=N` for another count, 1 for XLA's single device).
  Much of the context-aware saliency kernel (XLA's `TopK`, the bisection,
  the gathers) runs on one thread per device; with several devices
  `sr_jax.saliency` splits an image's query patches (or a batch's images)
  over them inside one jitted function, so every core works: 3.4 s -> 2.2 s
  per 250-px image on 2 cores. Work that is not split (models, LRP) runs on
  device 0 with XLA's intra-op thread pool, which all devices share
  (benchmarks/README.md, "CPU devices", has the stage-by-stage figures).
  For part of 2026-12-01 the default was one device: on one 2-core AMD
  EPYC VM, with jax/jaxlib 0.9.2 and 0.10.2, two XLA:CPU computations
  running at once (two devices, or two threads on one device) gave wrong
  saliency maps for some images. Nine later runs of
  `benchmarks/xla_cpu_concurrency.py` in two other sessions (also 2-core
  "AMD EPYC" VMs, same software) were exact to the bit, so the fault looks
  like that host's. tests/test_xla_cpu_concurrency.py fails on a machine
  whose concurrent results differ; `SR_JAX_CPU_DEVICES=1` is the way out.

Both only change `XLA_FLAGS`, so they only work before JAX creates its
backends (the first array or computation); if JAX already started, or
`$SR_JAX_TUNE_XLA` is "0", nothing changes. A flag the user already put in
`XLA_FLAGS` is kept as it is. On a GPU or TPU host the CPU devices are not
the default devices, so nothing visible changes there. `status()` says what
was applied.

glibc malloc settings, which keep big XLA buffers in the process for reuse:
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
JAX starts its thread pool (threads keep the arena they started with); it is
skipped when `$SR_JAX_TUNE_MALLOC` is "0" or the user already set glibc's own
`MALLOC_*` or `GLIBC_TUNABLES` variables. `malloc_is_tuned()` says whether
it was applied.
"""

from __future__ import annotations

import ctypes
import os
import sys

ENV = "SR_JAX_TUNE_XLA"
DEVICES_ENV = "SR_JAX_CPU_DEVICES"
# Every device holds a copy of the image and all candidate patches (~0.1 GB
# at 250 px), and `TopK`'s single thread per device is what more devices buy.
MAX_CPU_DEVICES = 8
_DEVICE_FLAG = "--xla_force_host_platform_device_count"
_YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
# What `configure_cpu` hands to YNNPACK by default (see above).
YNN_FUSION_TYPES = "individual_dot"
_state: dict[str, object] = {"applied": (), "reason": "not attempted"}

MALLOC_ENV = "SR_JAX_TUNE_MALLOC"
# mallopt parameter numbers from glibc's <malloc.h>.
M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8
_MALLOC_USER_ENV = ("MALLOC_ARENA_MAX", "MALLOC_MMAP_MAX_",
                    "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_",
                    "MALLOC_TOP_PAD_", "GLIBC_TUNABLES")
_malloc_state = {"tuned": False}


def tune_from_env() -> tuple:
  """The import-time hook: `tune_malloc_from_env()`, then `tune_xla_from_env()`.

  `sr_jax` calls it first thing on import, before JAX is imported; once
  JAX has started, a second call adds no XLA flags.

  Returns:
    The XLA flags added (see `tune_xla_from_env`).

  Raises:
    ValueError: if `$SR_JAX_CPU_DEVICES` is set but not an int >= 1.
  """
  tune_malloc_from_env()
  return tune_xla_from_env()


def available_cores() -> int:
  """CPU cores this process may run on (its affinity mask where known)."""
  try:
    return len(os.sched_getaffinity(0))
  except (AttributeError, OSError):
    return os.cpu_count() or 1


def default_devices() -> int:
  """The CPU device count `configure_cpu` uses when not told: one per core
  (`available_cores`), at most `MAX_CPU_DEVICES`."""
  return max(1, min(available_cores(), MAX_CPU_DEVICES))


def _backends_started() -> bool:
  try:
    from jax._src import xla_bridge  # pylint: disable=import-outside-toplevel
    return bool(xla_bridge.backends_are_initialized())
  except (ImportError, AttributeError):  # an unknown JAX: assume it started
    return True


def configure_cpu(devices: int | None = None, *,
                  ynn: bool | str = YNN_FUSION_TYPES) -> tuple:
  """Adds the settings above to `XLA_FLAGS`, if JAX has not started yet.

  Args:
    devices: CPU devices to create; None: `default_devices()` (one per
      core); 1: XLA's single device.
    ynn: what XLA:CPU hands to YNNPACK: a comma-separated list of XLA's
      library fusion types (default "individual_dot": single dot
      instructions), False or "" for nothing, True for XLA's own default
      (no flag added).

  Returns:
    The flags added (empty if JAX had started, or nothing was left to add).

  Raises:
    ValueError: if `devices` is not None or an int >= 1, or `ynn` is not a
      bool or a str.
  """
  if devices is not None and (isinstance(devices, bool)
                              or not isinstance(devices, int) or devices < 1):
    raise ValueError(f"`devices` (={devices!r}) must be None or an int >= 1.")
  if not isinstance(ynn, (bool, str)):
    raise ValueError(f"`ynn` (={ynn!r}) must be True (XLA's default), False "
                     "(nothing) or a comma-separated list of XLA library "
                     "fusion types such as 'individual_dot'.")
  if _backends_started():
    _state.update(applied=(), reason="JAX had already started")
    return ()
  flags = os.environ.get("XLA_FLAGS", "")
  added = []
  devices = default_devices() if devices is None else devices
  if devices > 1 and _DEVICE_FLAG not in flags:
    added.append(f"{_DEVICE_FLAG}={devices}")
  if ynn is not True and _YNN_FLAG not in flags:
    added.append(f"{_YNN_FLAG}={ynn or ''}")
  if added:
    os.environ["XLA_FLAGS"] = " ".join([flags, *added]).strip()
  _state.update(applied=tuple(added),
                reason="applied" if added else "nothing to add")
  return tuple(added)


def _devices_from_env() -> int | None:
  """`$SR_JAX_CPU_DEVICES` as an int >= 1, or None when unset or empty."""
  value = os.environ.get(DEVICES_ENV, "").strip()
  if not value:
    return None
  try:
    devices = int(value)
  except ValueError:
    devices = 0
  if devices < 1:
    raise ValueError(
        f"${DEVICES_ENV} (={value!r}) must be an int >= 1 (CPU devices to "
        "create), or unset for one per core.")
  return devices


def tune_xla_from_env() -> tuple:
  """`configure_cpu($SR_JAX_CPU_DEVICES)` unless `$SR_JAX_TUNE_XLA` is "0".

  Raises:
    ValueError: if `$SR_JAX_CPU_DEVICES` is set but not an int >= 1.
  """
  if os.environ.get(ENV, "1") == "0":
    _state.update(applied=(), reason=f"${ENV}=0")
    return ()
  return configure_cpu(_devices_from_env())


def status() -> dict:
  """What `tune_xla_from_env` did in this process: flags added, and why."""
  return dict(_state)


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
  _malloc_state["tuned"] = ok
  return ok


def tune_malloc_from_env() -> bool:
  """`keep_freed_memory()` unless `$SR_JAX_TUNE_MALLOC=0` or glibc is set up.

  Returns:
    Whether the settings were applied.
  """
  if os.environ.get(MALLOC_ENV, "1") == "0" or any(
      k in os.environ for k in _MALLOC_USER_ENV):
    return False
  return keep_freed_memory()


def malloc_is_tuned() -> bool:
  """Whether this process runs with `keep_freed_memory`'s settings."""
  return _malloc_state["tuned"]
