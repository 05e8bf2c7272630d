"""Speed of every attribution method beside our plain gradient and Captum.

    python benchmarks/methods.py                     # VGG-16, AlexNet; b 1, 8
    python benchmarks/methods.py --archs alexnet --batches 1 --reps 2
    python benchmarks/methods.py --methods guided_backprop,grad_cam

Each (architecture, batch) runs in a fresh subprocess with the same random
weights (He-scaled, as in benchmarks/models.py) on both sides, the same
224x224 input and the same target (class 1). Within it, each method is timed
round-robin with our jitted `gradient` (one forward, one backward: the
yardstick) and Captum's counterpart on the torch reference model, so the
three see the same load; the table gives the median ms per image of each,
the median per-round ratios ours/gradient and Captum/ours, and our first
call (compilation included). Counterparts: `gradient`: Saliency(abs=False);
`guided_backprop`: GuidedBackprop; `deconvnet`: Deconvolution; `grad_cam`:
LayerGradCam at the last ReLU of `features`, interpolated bilinearly to the
input; `deeplift`: DeepLift; `deepshap`: DeepLiftShap (a background of 2
images on both sides). NormGrad, the linear approximation, the multi-layer
map and meta-saliency have none. Goal: the one-forward-one-backward methods
(guided backprop, deconvnet, Grad-CAM, NormGrad) <= 1.2x our gradient and
not slower than Captum. JSON: benchmarks/results/methods.json.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
# pylint: disable-next=wrong-import-position
from _common import run_json_worker, write_json
from models import _flax_weights, _torch_state_dict

METHODS = ("gradient", "guided_backprop", "guided_backprop_resampled",
           "deconvnet", "grad_cam", "normgrad", "normgrad_selective",
           "normgrad_conv", "linear_approx", "multi_layer", "meta_gradient",
           "deeplift", "deepshap")
ONE_PASS = ("guided_backprop", "deconvnet", "grad_cam", "normgrad")
LAST_RELU = {"vgg16": 29, "alexnet": 11}  # torch `features` index
BACKGROUND = 2


def _ours(name: str, model, variables, x, t, background):
  import jax  # pylint: disable=import-outside-toplevel
  from sr_jax import attribution as A  # pylint: disable=import-outside-toplevel
  options = {"guided_backprop_resampled": {"resample_strided": True},
             "deepshap": {"background": background}}.get(name, {})
  fn = {"guided_backprop_resampled": A.guided_backprop,
        "meta_gradient": A.meta("gradient")}.get(name) or A.get_method(name)
  return lambda: jax.block_until_ready(fn(model, variables, x, target=t,
                                          **options))


def _captum(name: str, arch: str, tm, xt, tt, background):
  from captum import attr  # pylint: disable=import-outside-toplevel
  last = tm.features[LAST_RELU[arch]]
  make = {
      "gradient": lambda: attr.Saliency(tm).attribute(xt, tt, abs=False),
      "guided_backprop": lambda: attr.GuidedBackprop(tm).attribute(xt, tt),
      "deconvnet": lambda: attr.Deconvolution(tm).attribute(xt, tt),
      "grad_cam": lambda: attr.LayerAttribution.interpolate(
          attr.LayerGradCam(tm, last).attribute(xt, tt,
                                                relu_attributions=True),
          xt.shape[2:], interpolate_mode="bilinear"),
      "deeplift": lambda: attr.DeepLift(tm).attribute(xt, target=tt),
      "deepshap": lambda: attr.DeepLiftShap(tm).attribute(
          xt, target=tt, baselines=background),
  }
  return make.get(name)


def _round_robin(calls: dict, reps: int) -> dict[str, list[float]]:
  times = {k: [] for k in calls}
  for _ in range(reps):
    for k, call in calls.items():
      t = time.perf_counter()
      call()
      times[k].append(time.perf_counter() - t)
  return times


def worker(cfg: dict) -> dict:
  """Times every method for one (arch, batch); runs in its own process."""
  os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:cfg["threads"]])
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  import torch  # pylint: disable=import-outside-toplevel
  import sr_jax  # pylint: disable=import-outside-toplevel
  from sr_jax import weights  # pylint: disable=import-outside-toplevel
  from tests.reference import torch_models  # pylint: disable=import-outside-toplevel
  torch.set_num_threads(cfg["threads"])
  arch, b = cfg["arch"], cfg["batch"]
  flat = _flax_weights(arch)
  variables = jax.tree.map(jnp.asarray, weights.unflatten(flat))
  model = sr_jax.models.get_arch(arch).module()
  tm = torch_models.build(arch)
  tm.load_state_dict(_torch_state_dict(flat))
  tm.requires_grad_(False)
  del flat
  r = np.random.default_rng(1)
  x = r.standard_normal((b, 224, 224, 3)).astype(np.float32)
  bg = r.standard_normal((BACKGROUND, 224, 224, 3)).astype(np.float32)
  xj, bgj, t = jnp.asarray(x), jnp.asarray(bg), jnp.full((b,), 1, jnp.int32)
  xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
  bgt = torch.from_numpy(np.ascontiguousarray(bg.transpose(0, 3, 1, 2)))
  tt = torch.full((b,), 1, dtype=torch.long)
  grad = _ours("gradient", model, variables, xj, t, bgj)
  grad()
  rows = []
  for name in cfg["methods"]:
    ours = _ours(name, model, variables, xj, t, bgj)
    start = time.perf_counter()
    ours()
    first = time.perf_counter() - start
    calls = {"ours": ours, "gradient": grad}
    theirs = _captum(name, arch, tm, xt.clone().requires_grad_(), tt, bgt)
    if theirs is not None:
      calls["captum"] = theirs
    for _ in range(cfg["warmup"]):
      for call in calls.values():
        call()
    times = _round_robin(calls, cfg["reps"])
    row = {"method": name, "first_call_s": first,
           **{f"{k}_ms_per_image": 1e3 * statistics.median(v) / b
              for k, v in times.items()},
           "ratio_vs_gradient": statistics.median(
               o / g for o, g in zip(times["ours"], times["gradient"]))}
    if "captum" in times:
      row["captum_over_ours"] = statistics.median(
          c / o for c, o in zip(times["captum"], times["ours"]))
    rows.append(row)
    print(json.dumps(row), file=sys.stderr, flush=True)
  return {"rows": rows}


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--archs", default="vgg16,alexnet")
  parser.add_argument("--batches", default="1,8")
  parser.add_argument("--methods", default=",".join(METHODS))
  parser.add_argument("--reps", type=int, default=3)
  parser.add_argument("--warmup", type=int, default=1)
  parser.add_argument("--threads", type=int,
                      default=len(os.sched_getaffinity(0)))
  parser.add_argument("--timeout", type=float, default=7200.0)
  parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" /
                                           "methods.json"))
  parser.add_argument("--worker", help=argparse.SUPPRESS)
  parser.add_argument("--worker_out", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.worker:
    pathlib.Path(args.worker_out).write_text(
        json.dumps(worker(json.loads(args.worker))))
    return
  methods = args.methods.split(",")
  unknown = sorted(set(methods) - set(METHODS))
  if unknown:
    parser.error(f"unknown --methods {unknown}; known: {', '.join(METHODS)}")
  print(f"threads={args.threads} reps={args.reps} warmup={args.warmup} "
        f"load={os.getloadavg()[0]:.2f}")
  print(f"{'arch':8s} {'b':>2s} {'method':26s} {'ms/img':>8s} "
        f"{'grad':>8s} {'captum':>8s} {'/grad':>6s} {'captum/':>7s} "
        f"{'1st s':>6s}", flush=True)
  results = []
  for arch in args.archs.split(","):
    for batch in (int(b) for b in args.batches.split(",")):
      cfg = dict(arch=arch, batch=batch, methods=methods, reps=args.reps,
                 warmup=args.warmup, threads=args.threads)
      out = run_json_worker(__file__, cfg, args.timeout)
      if "error" in out:
        print(f"{arch:8s} {batch:2d} ERROR {out['error']}", flush=True)
        results.append(dict(cfg, error=out["error"]))
        continue
      for row in out["rows"]:
        goal = "*" if row["method"] in ONE_PASS else " "
        print(f"{arch:8s} {batch:2d} {row['method'] + goal:26s} "
              f"{row['ours_ms_per_image']:8.1f} "
              f"{row['gradient_ms_per_image']:8.1f} "
              f"{row.get('captum_ms_per_image', float('nan')):8.1f} "
              f"{row['ratio_vs_gradient']:6.2f} "
              f"{row.get('captum_over_ours', float('nan')):7.2f} "
              f"{row['first_call_s']:6.1f}", flush=True)
        results.append(dict(cfg, **row))
  print("* one forward and one backward: goal /grad <= 1.2, captum/ >= 1.")
  write_json(args.out, {"argv": sys.argv[1:], "threads": args.threads,
                        "loadavg_end": os.getloadavg(),
                        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
                        "rows": results})


if __name__ == "__main__":
  main()
