"""Speed of sr_jax on one GPU, and whether its maps equal the CPU's.

    benchmarks/gpu_check.sh                      # fresh venv with CUDA JAX, then this
    python benchmarks/gpu_check.py               # in an environment with CUDA JAX
    python benchmarks/gpu_check.py --cpu_smoke   # tiny CPU-only run of the same code

Parts, each timed after a warm-up call that compiles it (median of `--reps`):

* `saliency`: `sr_jax.saliency.context_aware` on scikit-image's `coffee` at
  250 px (batch 1) and `context_aware_batch` on 32 copies rolled sideways,
  in maps per second; goal >= 200 maps/s.
* `lrp`: `sr_jax.lrp.relevance` (`epsilon_plus_flat`) on VGG-16 with random
  weights at 224 px, batch 1, 32 and 128; ResNet-50 the same once
  `sr_jax.models` has it (skipped with a message until then).
* `pipeline`: `sr_jax.sr_map_batch` (LRP, relevance image, both saliency
  maps, Canny) on 32 synthetic images, in images per second; goal >= 100.
* `agreement` (last): the same three images through `context_aware` and
  `sr_map_batch` here and in a CPU-only subprocess (`JAX_PLATFORMS=cpu`,
  same weights: both initialised on the CPU), at JAX's default matmul
  precision (TF32 on recent NVIDIA GPUs) and at "highest". Passes when the
  predicted class and the LRP top-1 pixel agree exactly and every map
  correlates with the CPU's at r >= 0.999.

A timing part is skipped (and says so) when less than 45 s of `--budget_s`
would be left beside the `AGREEMENT_RESERVE_S` kept for the agreement; the
JSON is rewritten after every part, so a run cut short by the shell's
timeout keeps what it measured. "peak MiB" is the device's peak so far in
the process (None on the CPU). Without a GPU the script says so and
exits 0, unless `--cpu_smoke` asks for the tiny CPU run (vgg_tiny, 48-px
saliency, batches of 1-2: it exercises the code, its figures mean nothing).
JSON: `benchmarks/results/gpu_check.json` (`--json`).
"""

from __future__ import annotations

import functools
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

import jax
import numpy as np
from absl import app, flags
from skimage import data

import sr_jax
from sr_jax import files
from sr_jax.data import synthetic

from _common import timed  # benchmarks/ is on sys.path

ROOT = pathlib.Path(__file__).resolve().parent.parent
FLAGS = flags.FLAGS
flags.DEFINE_bool("cpu_smoke", False, "Tiny CPU-only run of every part.")
flags.DEFINE_string("json", str(ROOT / "benchmarks" / "results" /
                                "gpu_check.json"), "Where the JSON goes.")
flags.DEFINE_float("budget_s", 420.0, "Seconds for all parts together.")
flags.DEFINE_integer("reps", 3, "Timed calls per configuration.")
flags.DEFINE_string("reference", "", "Internal: compute the CPU reference "
                    "maps into this .npz file and exit.")

FULL = {"arch": "vgg16", "side": 250, "saliency_batches": (1, 32),
        "lrp_archs": ("vgg16", "resnet50"), "lrp_batches": (1, 32, 128),
        "pipeline_batch": 32, "image_size": 256}
SMOKE = {"arch": "vgg_tiny", "side": 48, "saliency_batches": (1, 2),
         "lrp_archs": ("vgg_tiny",), "lrp_batches": (1, 2),
         "pipeline_batch": 2, "image_size": 32}
GOALS = {"saliency": 200.0, "pipeline": 100.0}  # per second
COMPARED = 3
AGREEMENT_RESERVE_S = 150  # the CPU reference runs last
MIN_R = 0.999


def _config() -> dict[str, Any]:
  return SMOKE if FLAGS.cpu_smoke else FULL


def _coffee(n: int) -> np.ndarray:
  image = data.coffee()
  return np.stack([np.roll(image, 37 * i, axis=1) for i in range(n)])


def _pipeline_images(n: int, size: int) -> list[np.ndarray]:
  return [synthetic.sample_image(index=i, size=size) for i in range(n)]


@functools.lru_cache(maxsize=None)
def _on_cpu_model(arch: str):
  """Random weights drawn on the CPU (the same bits in both processes), put
  on the default device; and the sum of all parameters, to check that."""
  with jax.default_device(jax.devices("cpu")[0]):
    model, variables = sr_jax.load_model(arch, key=jax.random.PRNGKey(0))
  checksum = float(sum(np.asarray(v, np.float64).sum()
                       for v in jax.tree_util.tree_leaves(variables)))
  return model, jax.device_put(variables, jax.devices()[0]), checksum


def _maps(model, variables, cfg: dict[str, Any]) -> dict[str, np.ndarray]:
  """The maps compared between GPU and CPU, for `COMPARED` images."""
  saliency = np.stack([np.asarray(sr_jax.saliency.context_aware(
      im, max_side=cfg["side"])) for im in _coffee(COMPARED)])
  results = sr_jax.sr_map_batch(
      model, variables, _pipeline_images(COMPARED, cfg["image_size"]),
      arch=cfg["arch"])
  return {"saliency": saliency,
          "relevance": np.stack([r.relevance for r in results]),
          "sr": np.stack([r.sr for r in results]),
          "image_saliency": np.stack([r.image_saliency for r in results]),
          "target": np.array([r.target for r in results])}


def _reference(path: str) -> None:
  """Entry point of the CPU subprocess: the maps of `_maps`, as an .npz."""
  cfg = _config()
  model, variables, checksum = _on_cpu_model(cfg["arch"])
  files.save_npz(path, checksum=np.float64(checksum),
              **_maps(model, variables, cfg))


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
  a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
  if np.ptp(a) == 0 or np.ptp(b) == 0:
    return 1.0 if np.array_equal(a, b) else float("nan")
  return float(np.corrcoef(a, b)[0, 1])


def _top_pixel(relevance: np.ndarray) -> int:
  return int(np.argmax(relevance.sum(-1)))


def _compare(got: dict, want: dict) -> dict[str, Any]:
  """Per image: r of every map, class and LRP top-1 pixel agreement."""
  rows = []
  for i in range(COMPARED):
    flat = np.sort(want["relevance"][i].sum(-1).ravel())
    row = {name: _pearson(got[name][i], want[name][i])
           for name in ("saliency", "relevance", "sr", "image_saliency")}
    row.update(
        same_class=bool(got["target"][i] == want["target"][i]),
        same_top_pixel=(_top_pixel(got["relevance"][i])
                        == _top_pixel(want["relevance"][i])),
        # How close a tie the CPU's top pixel was (1 - second / first).
        top_pixel_margin=(float(1 - flat[-2] / flat[-1]) if flat[-1] > 0
                          else 0.0))
    rows.append(row)
  passed = all(r["same_class"] and r["same_top_pixel"] and min(
      r[k] for k in ("saliency", "relevance", "sr", "image_saliency")) >= MIN_R
               for r in rows)
  return {"images": rows, "passed": passed}


def _run_reference(budget: "Budget") -> dict[str, np.ndarray]:
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  with tempfile.TemporaryDirectory() as tmp:
    out = pathlib.Path(tmp) / "reference.npz"
    cmd = [sys.executable, __file__, f"--reference={out}"]
    if FLAGS.cpu_smoke:
      cmd.append("--cpu_smoke")
    done = subprocess.run(cmd, env=env, capture_output=True, text=True,
                          timeout=max(budget.left() - 30, 30), check=False)
    if done.returncode:
      raise RuntimeError("the CPU reference failed: "
                         + " | ".join(done.stderr.strip().splitlines()[-3:]))
    with np.load(out, allow_pickle=False) as npz:
      return {k: npz[k] for k in npz.files}


class Budget:
  """Seconds left of `--budget_s`, counted from the start of `main`."""

  def __init__(self, seconds: float):
    self.end = time.perf_counter() + seconds

  def left(self) -> float:
    return self.end - time.perf_counter()


def _timed(fn: Callable[[], Any], reps: int) -> dict[str, float]:
  """Seconds of the first call (compilation) and the median of `reps`."""
  first, times = timed(fn, reps)
  return {"first_call_s": first, "seconds": statistics.median(times),
          "min_seconds": min(times)}


def _peak_mib() -> float | None:
  stats = jax.devices()[0].memory_stats() or {}
  peak = stats.get("peak_bytes_in_use")
  return None if peak is None else peak / 2**20


def _row(part: str, what: str, batch: int, timing: dict, goal: float | None
         ) -> dict[str, Any]:
  rate = batch / timing["seconds"]
  return {"part": part, "what": what, "batch": batch, **timing,
          "per_s": rate, "goal_per_s": goal,
          "goal_met": None if goal is None else rate >= goal,
          "peak_mib": _peak_mib()}


Part = tuple[str, Callable[[], dict]]


def _saliency_parts(cfg: dict) -> list[Part]:
  def one(batch: int) -> Part:
    images = _coffee(batch)
    if batch == 1:
      fn = lambda: sr_jax.saliency.context_aware(images[0], max_side=cfg["side"])
      what = f"context_aware, {cfg['side']} px"
    else:
      fn = lambda: sr_jax.saliency.context_aware_batch(images,
                                                       max_side=cfg["side"])
      what = f"context_aware_batch, {cfg['side']} px"
    return (f"saliency batch {batch}",
            lambda: _row("saliency", what, batch, _timed(fn, FLAGS.reps),
                         GOALS["saliency"]))
  return [one(b) for b in cfg["saliency_batches"]]


def _lrp_parts(cfg: dict) -> list[Part]:
  def one(arch: str, batch: int) -> Part:
    def run() -> dict:
      model, variables, _ = _on_cpu_model(arch)
      size = sr_jax.models.get_arch(arch).input_size or 224
      x = jax.random.normal(jax.random.PRNGKey(1), (batch, size, size, 3))
      fn = lambda: sr_jax.lrp.relevance(model, variables, x,
                                        composite="epsilon_plus_flat")
      return _row("lrp", f"{arch} epsilon_plus_flat, {size} px", batch,
                  _timed(fn, FLAGS.reps), None)
    return f"LRP {arch} batch {batch}", run
  return [one(arch, b) for arch in cfg["lrp_archs"]
          if arch in sr_jax.models.ARCHS for b in cfg["lrp_batches"]]


def _pipeline_part(cfg: dict) -> Part:
  def run() -> dict:
    model, variables, _ = _on_cpu_model(cfg["arch"])
    images = _pipeline_images(cfg["pipeline_batch"], cfg["image_size"])
    fn = lambda: [r.sr for r in sr_jax.sr_map_batch(model, variables, images,
                                                    arch=cfg["arch"])]
    return _row("pipeline", f"sr_map_batch, {cfg['arch']}",
                cfg["pipeline_batch"], _timed(fn, FLAGS.reps),
                GOALS["pipeline"])
  return f"pipeline batch {cfg['pipeline_batch']}", run


def _agreement(cfg: dict, budget: Budget) -> dict[str, Any]:
  want = _run_reference(budget)
  model, variables, checksum = _on_cpu_model(cfg["arch"])
  out = {"weights_equal": checksum == float(want.pop("checksum"))}
  for precision in ("default", "highest"):
    with jax.default_matmul_precision(precision):
      out[precision] = _compare(_maps(model, variables, cfg), want)
  return out


def _table(report: dict) -> str:
  lines = [f"{'part':<9} {'what':<34} {'batch':>5} {'s/call':>8} {'per s':>8} "
           f"{'goal':>6} {'met':>4} {'peak MiB':>8}"]
  for r in report["rows"]:
    goal = "" if r["goal_per_s"] is None else f"{r['goal_per_s']:.0f}"
    met = "" if r["goal_met"] is None else ("yes" if r["goal_met"] else "no")
    peak = "" if r["peak_mib"] is None else f"{r['peak_mib']:.0f}"
    lines.append(f"{r['part']:<9} {r['what']:<34} {r['batch']:>5} "
                 f"{r['seconds']:8.3f} {r['per_s']:8.1f} {goal:>6} {met:>4} "
                 f"{peak:>8}")
  for skipped in report["skipped"]:
    lines.append(f"skipped: {skipped}")
  agreement = report.get("agreement")
  if isinstance(agreement, dict) and "default" in agreement:
    for precision in ("default", "highest"):
      rows = agreement[precision]["images"]
      worst = min(min(r[k] for k in ("saliency", "relevance", "sr",
                                     "image_saliency")) for r in rows)
      lines.append(
          f"agreement with the CPU ({precision} precision): "
          f"{'passed' if agreement[precision]['passed'] else 'FAILED'}; "
          f"lowest r {worst:.6f} (>= {MIN_R}), classes "
          f"{sum(r['same_class'] for r in rows)}/{COMPARED}, LRP top-1 pixel "
          f"{sum(r['same_top_pixel'] for r in rows)}/{COMPARED}")
  elif agreement is not None:
    lines.append(f"agreement with the CPU: {agreement}")
  return "\n".join(lines)


def _write(report: dict) -> None:
  path = pathlib.Path(FLAGS.json)
  path.parent.mkdir(parents=True, exist_ok=True)
  files.atomic_write(path, (json.dumps(report, indent=1) + "\n").encode())


def _machine() -> dict[str, Any]:
  device = jax.devices()[0]
  info = {"platform": device.platform, "device_kind": device.device_kind,
          "devices": len(jax.devices()), "jax": jax.__version__,
          "jaxlib": jax.lib.__version__, "python": platform.python_version(),
          "cpus": os.cpu_count(), "host": platform.platform()}
  try:
    info["nvidia_smi"] = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
         "--format=csv,noheader"], capture_output=True, text=True,
        timeout=30, check=False).stdout.strip()
  except (OSError, subprocess.TimeoutExpired):
    info["nvidia_smi"] = None
  return info


def main(argv) -> None:
  del argv
  if FLAGS.reference:
    _reference(FLAGS.reference)
    return
  budget = Budget(FLAGS.budget_s)
  if jax.default_backend() != "gpu" and not FLAGS.cpu_smoke:
    print(f"gpu_check: JAX sees no GPU (default backend "
          f"{jax.default_backend()!r}); skipping the GPU parts. "
          "--cpu_smoke runs a tiny CPU-only version of them.")
    return
  cfg = _config()
  report: dict[str, Any] = {
      "mode": "cpu_smoke" if FLAGS.cpu_smoke else "gpu",
      "machine": _machine(), "config": {k: list(v) if isinstance(v, tuple)
                                        else v for k, v in cfg.items()},
      "reps": FLAGS.reps, "goals_per_s": GOALS, "rows": [], "skipped": []}
  if FLAGS.cpu_smoke:
    print("gpu_check --cpu_smoke: a tiny CPU run that exercises the code; "
          "its figures are no GPU figures.")
  print(f"gpu_check on {report['machine']['device_kind']} "
        f"({report['machine']['platform']}), jax {jax.__version__}")
  parts = [*_saliency_parts(cfg), *_lrp_parts(cfg), _pipeline_part(cfg)]
  for arch in cfg["lrp_archs"]:
    if arch not in sr_jax.models.ARCHS:
      note = (f"LRP on {arch}: sr_jax.models has no {arch!r} yet (it has "
              f"{', '.join(sorted(sr_jax.models.ARCHS))})")
      print(f"skipping {note}")
      report["skipped"].append(note)
  for name, part in parts:
    if budget.left() < AGREEMENT_RESERVE_S + 45:
      report["skipped"].append(f"{name}: out of time ({FLAGS.budget_s:.0f} "
                               f"s budget, {AGREEMENT_RESERVE_S} s kept for "
                               "the agreement check)")
      print(f"skipping {report['skipped'][-1]}")
      continue
    try:
      report["rows"].append(part())
    except Exception as e:  # pylint: disable=broad-exception-caught
      # One failing part (say, a model LRP does not cover) must not cost the
      # figures of the others; the message goes into the JSON and the table.
      report["skipped"].append(f"{name}: failed: {type(e).__name__}: {e}")
      print(f"skipping {report['skipped'][-1]}")
      continue
    print(_table({"rows": report["rows"][-1:], "skipped": []}).splitlines()[-1])
    _write(report)
  try:
    report["agreement"] = _agreement(cfg, budget)
  except (RuntimeError, subprocess.TimeoutExpired) as e:
    report["agreement"] = f"not checked: {e}"
  _write(report)
  print()
  print(_table(report))
  print(f"wrote {FLAGS.json}")


if __name__ == "__main__":
  app.run(main)
