"""Speed and memory of the context-aware saliency kernel (`sr_jax.saliency`).

    python benchmarks/context_aware.py                     # 125, 250, 500 px
    python benchmarks/context_aware.py --sizes 250 --reps 5
    python benchmarks/context_aware.py --ref-sizes ""      # no NumPy reference

Reports, each configuration in a fresh subprocess (so that peak memory,
VmHWM from /proc/self/status, is its own):

* `kernel`: seconds per image of `context_aware` at each `max_side` (median
  of `--reps` calls), the first call's compile time apart;
* `distance`: the distance stage alone (`knn.mean_knn_distance` for every
  scale, on random patches of the exact sizes of that image, its queries
  split over the devices as the kernel splits them), its FLOP count
  (2·queries·candidates·patch length per scale: the matrix products) and the
  GFLOP/s achieved, beside the float32 matmul rate measured in the same
  process (jnp on the distance stage's block shape, and NumPy on 2048^3);
* `batch`: images per second of `context_aware_batch` on 8 images at 250 px;
* `reference`: the float64 NumPy reference (tests/reference) where it
  finishes in reasonable time (its brute force holds a W x candidates x D
  float64 array per image row: about 2 GB at 250 px, so 125 px only).

Input: scikit-image's `coffee` photograph (400x600), resized by the kernel.
Prints a table and writes benchmarks/results/context_aware.json.
"""

from __future__ import annotations

# Workers import JAX and the library lazily, inside the subprocess.
# pylint: disable=import-outside-toplevel

import argparse
import functools
import importlib
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
from _common import timed as _timed, vmhwm_mib  # benchmarks/ is on sys.path
RESULTS = ROOT / "benchmarks" / "results" / "context_aware.json"


def _images(n: int):
  """`n` different 400x600 uint8 photographs (skimage samples, flips)."""
  import numpy as np
  from PIL import Image
  from skimage import data
  base = [data.coffee(), data.chelsea(), data.rocket(), data.astronaut()]
  base = [np.asarray(Image.fromarray(b).resize((600, 400), Image.BILINEAR))
          for b in base]
  out = base + [b[:, ::-1] for b in base]
  return [np.ascontiguousarray(out[i % len(out)]) for i in range(n)]


def worker_kernel(size: int, reps: int, block_size: int) -> dict:
  from sr_jax.saliency import context_aware
  image = _images(1)[0]
  first, times = _timed(
      lambda: context_aware(image, max_side=size, block_size=block_size), reps)
  median = statistics.median(times)
  return {"max_side": size, "block_size": block_size,
          "seconds_per_image": median, "seconds_min": min(times),
          "compile_seconds": first - median, "peak_mib": vmhwm_mib()}


def _distance_fn(one, split, mesh, q_pos, c_pos):
  """`one` on (queries, candidates), split over `mesh` as the kernel does
  (`split` is the kernel's `_split_queries`)."""

  def fn(queries, candidates):
    if mesh is None:
      return one(queries, q_pos, candidates, c_pos)
    return split(one, mesh, queries, q_pos, candidates, c_pos)
  return fn


def worker_distance(size: int, reps: int, block_size: int) -> dict:
  import jax
  import jax.numpy as jnp
  import numpy as np
  from sr_jax.saliency import knn, options
  # The module (the package re-exports its function under the same name).
  ca = importlib.import_module("sr_jax.saliency.context_aware")
  rng = np.random.default_rng(0)
  plan = options.make_plan((400, 600), options.Options.create(
      max_side=size, block_size=block_size))
  # As the kernel runs it: queries split over every device JAX sees (one
  # CPU device unless SR_JAX_CPU_DEVICES asks for more), candidates on each.
  mesh = ca._mesh(None, traced=False)  # pylint: disable=protected-access
  total, flops, per_scale = 0.0, 0, []
  for sp in plan.scales:
    h = sp.half_size
    dim = (2 * h + 1) ** 2 * 3
    n_q = (sp.shape[0] - 2 * h) * (sp.shape[1] - 2 * h)
    queries = jnp.asarray(rng.random((n_q, dim), np.float32))
    candidates = jnp.asarray(rng.random((sp.n_candidates, dim), np.float32))
    # Positions are compile-time constants in the kernel; here too.
    q_pos = rng.random((n_q, 2), np.float32)
    c_pos = rng.random((sp.n_candidates, 2), np.float32)
    one = functools.partial(knn.mean_knn_distance, k=64, c=3.0,
                            block_size=block_size)
    fn = jax.jit(_distance_fn(
        one, ca._split_queries, mesh,  # pylint: disable=protected-access
        q_pos, c_pos))
    args = (queries, candidates)
    _, times = _timed(lambda: fn(*args), reps)
    seconds = statistics.median(times)
    total += seconds
    flops += 2 * n_q * sp.n_candidates * dim
    per_scale.append({"scale": sp.scale, "queries": n_q,
                      "candidates": sp.n_candidates, "dim": dim,
                      "seconds": seconds})
  # Matmul rates in the same process.
  sp = plan.scales[0]
  dim = (2 * sp.half_size + 1) ** 2 * 3
  a = jnp.asarray(rng.random((block_size, dim), np.float32))
  b = jnp.asarray(rng.random((dim, sp.n_candidates), np.float32))
  mm = jax.jit(lambda a, b: a @ b)
  _, times = _timed(lambda: mm(a, b), max(reps, 5))
  jnp_rate = 2 * block_size * dim * sp.n_candidates / min(times) / 1e9
  x = rng.random((2048, 2048), np.float32)
  np_times = []
  for _ in range(3):
    start = time.perf_counter()
    x @ x
    np_times.append(time.perf_counter() - start)
  np_rate = 2 * 2048 ** 3 / min(np_times) / 1e9
  return {"max_side": size, "block_size": block_size,
          "devices": 1 if mesh is None else mesh.size,
          "distance_seconds": total, "distance_gflop": flops / 1e9,
          "distance_gflops": flops / total / 1e9, "scales": per_scale,
          "matmul_gflops_jnp_block": jnp_rate, "matmul_gflops_numpy": np_rate,
          "peak_mib": vmhwm_mib()}


def worker_batch(size: int, reps: int, block_size: int, n: int = 8) -> dict:
  import numpy as np
  from sr_jax.saliency import context_aware_batch
  images = np.stack(_images(n))
  first, times = _timed(lambda: context_aware_batch(
      images, max_side=size, block_size=block_size), reps)
  median = statistics.median(times)
  return {"max_side": size, "batch": n, "block_size": block_size,
          "seconds_per_batch": median, "images_per_second": n / median,
          "compile_seconds": first - median, "peak_mib": vmhwm_mib()}


def worker_reference(size: int, reps: int, block_size: int) -> dict:
  del reps, block_size
  sys.path.insert(0, str(ROOT))
  from tests.reference import context_aware_np
  image = _images(1)[0]
  start = time.perf_counter()
  context_aware_np.context_aware(image, max_side=size)
  return {"max_side": size, "seconds_per_image": time.perf_counter() - start,
          "peak_mib": vmhwm_mib()}


WORKERS = {"kernel": worker_kernel, "distance": worker_distance,
           "batch": worker_batch, "reference": worker_reference}


def run_worker(kind: str, size: int, reps: int, block_size: int) -> dict:
  """Runs one configuration in a fresh Python process; returns its dict."""
  env = dict(os.environ, PYTHONPATH=str(ROOT))
  cmd = [sys.executable, __file__, "--worker", kind, "--sizes", str(size),
         "--reps", str(reps), "--block-size", str(block_size)]
  proc = subprocess.run(cmd, capture_output=True, text=True, env=env,
                        check=False)
  if proc.returncode != 0:
    return {"max_side": size, "error": proc.stderr.strip()[-2000:]}
  return json.loads(proc.stdout.strip().splitlines()[-1])


def _write_json(path: pathlib.Path, payload: dict) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False,
                                   suffix=".tmp") as f:
    json.dump(payload, f, indent=2)
  os.replace(f.name, path)


def _table(results: dict) -> str:
  lines = ["max_side  s/image  compile_s  peak_MiB  distance_s  GFLOP  "
           "GFLOP/s  matmul_jnp  matmul_np  ref_s"]
  dist = {r["max_side"]: r for r in results["distance"]}
  refs = {r["max_side"]: r for r in results["reference"]}
  for k in results["kernel"]:
    d, r = dist.get(k["max_side"], {}), refs.get(k["max_side"], {})
    if "error" in k:
      lines.append(f"{k['max_side']:>8}  error: {k['error'][-200:]}")
      continue
    lines.append(
        f"{k['max_side']:>8}  {k['seconds_per_image']:7.2f}  "
        f"{k['compile_seconds']:9.1f}  {k['peak_mib']:8.0f}  "
        f"{d.get('distance_seconds', float('nan')):10.2f}  "
        f"{d.get('distance_gflop', float('nan')):5.0f}  "
        f"{d.get('distance_gflops', float('nan')):7.1f}  "
        f"{d.get('matmul_gflops_jnp_block', float('nan')):10.1f}  "
        f"{d.get('matmul_gflops_numpy', float('nan')):9.1f}  "
        f"{r.get('seconds_per_image', float('nan')):5.1f}")
  for b in results["batch"]:
    if "error" not in b:
      lines.append(
          f"batch of {b['batch']} at {b['max_side']} px: "
          f"{b['images_per_second']:.2f} images/s "
          f"({b['seconds_per_batch']:.2f} s per batch, peak "
          f"{b['peak_mib']:.0f} MiB, compile {b['compile_seconds']:.1f} s)")
  return "\n".join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--sizes", default="125,250,500",
                      help="comma-separated max_side values")
  parser.add_argument("--reps", type=int, default=3,
                      help="timed calls after the first")
  parser.add_argument("--block-size", type=int, default=512)
  parser.add_argument("--batch-size", type=int, default=250,
                      help="max_side of the batch run; 0 skips it")
  parser.add_argument("--ref-sizes", default="125",
                      help="sizes for the NumPy reference ('' skips it)")
  parser.add_argument("--worker", choices=sorted(WORKERS),
                      help=argparse.SUPPRESS)
  parser.add_argument("--out", default=str(RESULTS))
  args = parser.parse_args()
  sizes = [int(s) for s in args.sizes.split(",") if s]
  if args.worker:
    print(json.dumps(WORKERS[args.worker](sizes[0], args.reps,
                                          args.block_size)))
    return

  load_before = os.getloadavg()
  results = {"kernel": [], "distance": [], "batch": [], "reference": []}
  for size in sizes:
    for kind in ("kernel", "distance"):
      results[kind].append(run_worker(kind, size, args.reps, args.block_size))
      print(kind, size, results[kind][-1], flush=True)
  if args.batch_size:
    results["batch"].append(run_worker("batch", args.batch_size,
                                       args.reps, args.block_size))
    print("batch", results["batch"][-1], flush=True)
  for size in [int(s) for s in args.ref_sizes.split(",") if s]:
    results["reference"].append(run_worker("reference", size, 0,
                                           args.block_size))
    print("reference", size, results["reference"][-1], flush=True)
  results["machine"] = {"cpus": os.cpu_count(),
                        "loadavg_before": load_before,
                        "loadavg_after": os.getloadavg(),
                        "python": sys.version.split()[0]}
  print()
  print(_table(results))
  print(f"load average before/after: {load_before[0]:.1f} / "
        f"{results['machine']['loadavg_after'][0]:.1f} "
        f"({os.cpu_count()} CPUs)")
  _write_json(pathlib.Path(args.out), results)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
