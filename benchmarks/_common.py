"""Helpers shared by the benchmark scripts: timing, peak memory, workers."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Optional

ROOT = pathlib.Path(__file__).resolve().parent.parent


def timed(fn: Callable[[], Any], reps: int) -> tuple[float, list[float]]:
  """Seconds of `fn`'s first call (compilation included) and of `reps` more,
  each waiting for JAX's results (`jax.block_until_ready`)."""
  import jax  # pylint: disable=import-outside-toplevel
  start = time.perf_counter()
  jax.block_until_ready(fn())
  first = time.perf_counter() - start
  times = []
  for _ in range(reps):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return first, times


def vmhwm_mib() -> float:
  """This process's peak resident memory (VmHWM) in MiB; NaN if unknown."""
  with open("/proc/self/status", encoding="ascii") as f:
    for line in f:
      if line.startswith("VmHWM:"):
        return int(line.split()[1]) / 1024.0
  return float("nan")


def run_json_worker(script: str, cfg: dict, timeout: float,
                    env: Optional[dict] = None) -> dict:
  """Runs `script --worker CFG --worker_out FILE` in a fresh interpreter.

  Returns the JSON the worker wrote, or `{"error": ...}` with the last line
  of its stderr (or the timeout).
  """
  env = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
  with tempfile.NamedTemporaryFile("r", suffix=".json") as out:
    cmd = [sys.executable, script, "--worker", json.dumps(cfg),
           "--worker_out", out.name]
    try:
      done = subprocess.run(cmd, env=env, timeout=timeout, check=False,
                            capture_output=True, text=True)
    except subprocess.TimeoutExpired:
      return {"error": f"timeout after {timeout} s"}
    if done.returncode != 0:
      return {"error": done.stderr.strip().splitlines()[-1:]}
    return json.loads(out.read())


def write_json(path: str | os.PathLike, payload: dict) -> None:
  """Writes `payload` as JSON to `path` atomically (temporary file, then
  rename) and says so. Plain `os`, not `sr_jax.files`: importing `sr_jax`
  would tune this parent process's XLA and malloc environment, which the
  workers inherit."""
  out = pathlib.Path(path)
  out.parent.mkdir(parents=True, exist_ok=True)
  tmp = out.with_suffix(".json.tmp")
  tmp.write_text(json.dumps(payload, indent=1))
  os.replace(tmp, out)
  print(f"Wrote {out}.")
