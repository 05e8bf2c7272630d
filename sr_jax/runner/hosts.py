"""Runs over many hosts on JAX's own multi-controller runtime.

`initialize` starts `jax.distributed` when asked (explicit coordinator
flags, or auto-detection of SLURM, Open MPI and TPU environments); after
that every process runs the same `sr_jax.runner.run`, which takes its share
of the files and meets the others only at a few barriers. We write no
scheduler of our own: the cluster's launcher (srun, mpirun, a TPU pod)
starts the processes.

With one process (the default) every function here is a no-op, so the
single-machine path never touches `jax.distributed`.
"""

from __future__ import annotations

import zlib
from typing import Optional, Sequence

import jax
import numpy as np


def initialize(*, coordinator_address: Optional[str] = None,
               num_processes: Optional[int] = None,
               process_id: Optional[int] = None,
               auto: bool = False) -> bool:
  """Starts `jax.distributed` if any argument asks for it.

  Call it before JAX computes anything. With none of the three values and
  `auto=False` nothing happens (a single-process run). With `auto=True` and
  no values, `jax.distributed.initialize()` reads the cluster's environment
  (SLURM, Open MPI, TPU); values given override what it detects.

  Args:
    coordinator_address: "host:port" of process 0's coordinator.
    num_processes: how many processes the run has.
    process_id: this process's index, 0..num_processes-1.
    auto: start `jax.distributed` even without the values above.

  Returns:
    Whether `jax.distributed` was started.

  Raises:
    ValueError: if `num_processes` or `process_id` is out of range.
  """
  if num_processes is not None and num_processes < 1:
    raise ValueError(f"`num_processes` (={num_processes}) must be >= 1.")
  last = "`num_processes` - 1" if num_processes is None else num_processes - 1
  if process_id is not None and (
      process_id < 0 or (num_processes is not None
                         and process_id >= num_processes)):
    raise ValueError(f"`process_id` (={process_id}) must be in 0..{last}.")
  given = (coordinator_address, num_processes, process_id)
  if not auto and all(v is None for v in given):
    return False
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes,
                             process_id=process_id)
  return True


def process() -> tuple[int, int]:
  """(this process's index, the number of processes) of the run."""
  return jax.process_index(), jax.process_count()


def barrier(name: str) -> None:
  """Waits until every process of the run has reached `name`."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
    multihost_utils.sync_global_devices(name)


def check_same_inputs(names: Sequence[str]) -> None:
  """Raises in every process unless all see the same sorted input names
  (a barrier too).

  Raises:
    RuntimeError: if the processes' lists differ (e.g. an output folder
      that is not shared, or files that changed while they started).
  """
  if jax.process_count() == 1:
    return
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
  digest = zlib.crc32("\n".join(names).encode())
  mine = np.array([len(names), digest], np.uint32)
  every = np.asarray(multihost_utils.process_allgather(mine)).reshape(-1, 2)
  if not (every == mine).all():
    raise RuntimeError(
        "The processes see different input files (count and CRC-32 of the "
        f"sorted names, by process: {every.tolist()}); every process must "
        "see the same `input`.")


def broadcast(mask: np.ndarray) -> np.ndarray:
  """Process 0's boolean `mask`, in every process (a barrier too)."""
  if jax.process_count() == 1:
    return mask
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
  value = multihost_utils.broadcast_one_to_all(mask.astype(np.int32))
  return np.asarray(value).astype(bool)
