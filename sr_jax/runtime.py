"""XLA:CPU settings that sr_jax applies when it is imported before JAX starts.

Two settings, both measured on a 2-core Xeon (benchmarks/README.md):

* **One JAX device per CPU core** (`--xla_force_host_platform_device_count`).
  Much of the context-aware saliency kernel (XLA's `TopK`, the bisection,
  the gathers) runs on one thread per device, whatever the core count. With
  one device per core, `sr_jax.saliency` splits the query patches of an
  image (or the images of a batch) over the devices inside one jitted
  function, so every core works: 3.1 s → 2.2-2.35 s per 250-px image. Other
  computations still run on device 0 with XLA's usual multi-threading, so
  models and LRP are unaffected.
* **No YNNPACK fusions** (`--xla_cpu_experimental_ynn_fusion_type=` empty).
  XLA:CPU hands some elementwise and small dot fusions to YNNPACK on a
  second thread pool; on 2 cores that oversubscribes them. Without them
  the VGG-16 forward pass took 0.80x the time at batch 1 and AlexNet 0.72x
  at batch 8, and the saliency kernel 0.9x.

Both only change `XLA_FLAGS`, so they only work before JAX creates its
backends (the first array or computation). `sr_jax` calls `tune_from_env`
first thing on import; if JAX already started, or `$SR_JAX_TUNE_XLA` is "0",
nothing changes. A flag the user already put in `XLA_FLAGS` is kept as it is.
On a GPU or TPU host the CPU devices are not the default devices, so
nothing visible changes there.
"""

from __future__ import annotations

import os

ENV = "SR_JAX_TUNE_XLA"
MAX_CPU_DEVICES = 8
_DEVICE_FLAG = "--xla_force_host_platform_device_count"
_YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
_state: dict[str, object] = {"applied": (), "reason": "not attempted"}


def available_cores() -> int:
  """CPU cores this process may run on (its affinity mask where known)."""
  try:
    return len(os.sched_getaffinity(0))
  except (AttributeError, OSError):
    return os.cpu_count() or 1


def _backends_started() -> bool:
  try:
    from jax._src import xla_bridge  # pylint: disable=import-outside-toplevel
    return bool(xla_bridge.backends_are_initialized())
  except (ImportError, AttributeError):  # an unknown JAX: assume it started
    return True


def configure_cpu(devices: int | None = None, *, ynn: bool = False) -> tuple:
  """Adds the settings above to `XLA_FLAGS`, if JAX has not started yet.

  Args:
    devices: CPU devices to create; None: one per available core, at most
      `MAX_CPU_DEVICES`.
    ynn: keep XLA's YNNPACK fusions (False turns them off).

  Returns:
    The flags added (empty if JAX had started, or the user's `XLA_FLAGS`
    already set both).

  Raises:
    ValueError: if `devices` is not None or an int >= 1.
  """
  if devices is not None and (isinstance(devices, bool)
                              or not isinstance(devices, int) or devices < 1):
    raise ValueError(f"`devices` (={devices!r}) must be None or an int >= 1.")
  if _backends_started():
    _state.update(applied=(), reason="JAX had already started")
    return ()
  flags = os.environ.get("XLA_FLAGS", "")
  added = []
  if _DEVICE_FLAG not in flags:
    n = devices or min(available_cores(), MAX_CPU_DEVICES)
    added.append(f"{_DEVICE_FLAG}={n}")
  if not ynn and _YNN_FLAG not in flags:
    added.append(f"{_YNN_FLAG}=")
  if added:
    os.environ["XLA_FLAGS"] = " ".join([flags, *added]).strip()
  _state.update(applied=tuple(added),
                reason="applied" if added else "already in XLA_FLAGS")
  return tuple(added)


def tune_from_env() -> tuple:
  """`configure_cpu()` unless `$SR_JAX_TUNE_XLA` is "0"."""
  if os.environ.get(ENV, "1") == "0":
    _state.update(applied=(), reason=f"${ENV}=0")
    return ()
  return configure_cpu()


def status() -> dict:
  """What `tune_from_env` did in this process: flags added, and why."""
  return dict(_state)
