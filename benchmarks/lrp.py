"""LRP speed: our jitted relevance beside Captum's LRP and our plain gradient.

    python benchmarks/lrp.py                 # VGG-16 and AlexNet, batch 1 and 8
    python benchmarks/lrp.py --reps 10       # quieter figures
    python benchmarks/lrp.py --archs alexnet --batches 1 --methods lrp,grad
    python benchmarks/lrp.py --archs alexnet --reps 5   # AlexNet only
    python benchmarks/lrp.py --archs alexnet --xla_flags=FLAGS  # extra XLA flags

Each (method, composite, architecture, batch) runs in a fresh subprocess, so
its peak memory (VmHWM) is its own. All methods see the same random weights
(He-scaled, as in benchmarks/models.py), the same 224x224 input, the same
target (the argmax) and the same thread count. Methods:
  * `grad`: our jitted input gradient of the target logit (one forward, one
    backward): the yardstick; LRP should cost at most 1.5x this.
  * `torch_grad`: the same input gradient in torch on the reference model
    (`torch.autograd.grad`, parameters frozen, so no weight gradients).
  * `lrp`: `sr_jax.lrp.relevance` (jitted) with the composite.
  * `captum`: `captum.attr.LRP` with the nearest Captum rules: for
    `epsilon_plus_flat` the first conv gets EpsilonRule (Captum has no flat
    rule), the others Alpha1_Beta0_Rule; for `epsilon_gamma_box` the first
    conv gets EpsilonRule (no z^B rule), the others GammaRule(0.25); dense
    layers EpsilonRule(1e-6). The first layer is a small share of the work.
The table gives the median ms per image over `--reps` timed calls after
`--warmup` calls, the first call (compilation included), the ratios
lrp/grad, captum/lrp and torch_grad/grad ("/ours"), and peak memory. On a
shared machine the separate processes see different loads, so each `lrp`
worker also alternates its call with the plain gradient in the same process,
after recording its peak memory, and reports the median ratio ("same-proc");
each `captum` worker does the same with our LRP (captum/ours) and each
`torch_grad` worker with our gradient (torch/ours). JSON:
benchmarks/results/lrp.json.
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
# Shared with the forward-pass benchmark: weights, timing, peak memory.
# pylint: disable-next=wrong-import-position
from _common import run_json_worker, vmhwm_mib, write_json
from models import _flax_weights, _time, _torch_state_dict

COMPOSITES = ("epsilon_plus_flat", "epsilon_gamma_box")


def _captum_rules(composite: str):
  """Per-layer Captum rules closest to `composite` (see the module doc)."""
  from captum.attr._utils import lrp_rules  # pylint: disable=import-outside-toplevel
  if composite == "epsilon_plus_flat":
    conv = lambda: lrp_rules.Alpha1_Beta0_Rule(set_bias_to_zero=True)
  else:
    conv = lambda: lrp_rules.GammaRule(0.25)
  return (lambda: lrp_rules.EpsilonRule(1e-6), conv,
          lambda: lrp_rules.EpsilonRule(1e-6))


def _torch_call(cfg, flat, x, target):
  import numpy as np  # pylint: disable=import-outside-toplevel
  import torch  # pylint: disable=import-outside-toplevel
  from captum.attr import LRP  # pylint: disable=import-outside-toplevel
  from tests.reference import torch_models  # pylint: disable=import-outside-toplevel
  torch.set_num_threads(cfg["threads"])
  model = torch_models.build(cfg["arch"])
  model.load_state_dict(_torch_state_dict(flat))
  xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
  tt = torch.tensor(target.tolist())
  if cfg["method"] == "torch_grad":
    model.requires_grad_(False)

    def grad():
      xg = xt.clone().requires_grad_()
      logit = model(xg).gather(1, tt[:, None]).sum()
      return torch.autograd.grad(logit, xg)[0]
    return grad
  first, conv, dense = _captum_rules(cfg["composite"])
  convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]

  def call():
    for m in model.modules():  # Captum removes the rules after each call
      if isinstance(m, torch.nn.Conv2d):
        m.rule = first() if m is convs[0] else conv()
      elif isinstance(m, torch.nn.Linear):
        m.rule = dense()
    return LRP(model).attribute(xt.clone().requires_grad_(), target=tt)
  return call


def _jax_call(cfg, flat, x, target):
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  import sr_jax  # pylint: disable=import-outside-toplevel
  from sr_jax import lrp, weights  # pylint: disable=import-outside-toplevel
  variables = jax.tree.map(jnp.asarray, weights.unflatten(flat))
  model = sr_jax.models.get_arch(cfg["arch"]).module()
  xj, tj = jnp.asarray(x), jnp.asarray(target, jnp.int32)
  def target_logit(x, variables, t):  # weights as arguments, as in lrp
    logits = model.apply(variables, x)
    return jnp.sum(jnp.take_along_axis(logits, t[:, None], axis=1))
  grad = jax.jit(jax.grad(target_logit))
  grad_call = lambda: grad(xj, variables, tj).block_until_ready()
  if cfg["method"] == "grad":
    return grad_call
  composite = lrp.get_composite(cfg["composite"])
  call = lambda: lrp.relevance(model, variables, xj, target=tj,
                               composite=composite).block_until_ready()
  call.grad_call = grad_call
  return call


def _interleaved_ratio(call, other, reps: int) -> float:
  """Median of time(call) / time(other) over alternating calls."""
  other()  # compile
  ratios = []
  for _ in range(max(reps, 1)):
    t = time.perf_counter()
    call()
    a = time.perf_counter() - t
    t = time.perf_counter()
    other()
    ratios.append(a / (time.perf_counter() - t))
  return statistics.median(ratios)


def worker(cfg: dict) -> dict:
  """Measures one configuration; runs in its own process."""
  os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:cfg["threads"]])
  import numpy as np  # pylint: disable=import-outside-toplevel
  torch_side = cfg["method"] in ("captum", "torch_grad")
  if not torch_side:
    import sr_jax  # pylint: disable=import-outside-toplevel,unused-import
  flat = _flax_weights(cfg["arch"])
  x = np.random.default_rng(1).standard_normal(
      (cfg["batch"], 224, 224, 3)).astype(np.float32)
  target = np.zeros(cfg["batch"], np.int64) + 1  # fixed: class 1
  make = _torch_call if torch_side else _jax_call
  call = make(cfg, flat, x, target)
  del flat
  t = time.perf_counter()
  call()
  first = time.perf_counter() - t
  wall, cpu, _ = _time(call, cfg["reps"], cfg["warmup"])
  b = cfg["batch"]
  result = {"ms_per_image": 1e3 * statistics.median(wall) / b,
            "ms_per_image_min": 1e3 * min(wall) / b,
            "cpu_ms_per_image": 1e3 * statistics.median(cpu) / b,
            "first_call_s": first, "times_s": wall,
            "peak_rss_mib": vmhwm_mib()}
  # After the peak: ratios robust to load, by alternating calls in-process.
  if hasattr(call, "grad_call"):
    result["interleaved_ratio_vs_grad"] = _interleaved_ratio(
        call, call.grad_call, cfg["reps"])
  if torch_side:
    flat = _flax_weights(cfg["arch"])
    ours = _jax_call(dict(cfg, method="lrp" if cfg["method"] == "captum"
                          else "grad"), flat, x, target)
    del flat
    name = ("interleaved_captum_over_lrp" if cfg["method"] == "captum" else
            "interleaved_torch_over_grad")
    result[name] = _interleaved_ratio(call, ours, cfg["reps"])
  return result


def run_worker(cfg: dict, timeout: float) -> dict:
  """Runs `worker(cfg)` in a fresh interpreter, with `cfg["xla_flags"]`
  appended to `XLA_FLAGS` (sr_jax keeps a flag the user set)."""
  env = {}
  if cfg.get("xla_flags"):
    env["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " +
                        cfg["xla_flags"]).strip()
  return run_json_worker(__file__, cfg, timeout, env)


def _configs(args) -> list[dict]:
  configs = []
  for arch in args.archs.split(","):
    for batch in (int(b) for b in args.batches.split(",")):
      base = dict(arch=arch, batch=batch, reps=args.reps,
                  warmup=args.warmup, threads=args.threads,
                  xla_flags=args.xla_flags)
      for method in args.methods.split(","):
        for composite in ((None,) if method.endswith("grad") else
                          COMPOSITES):
          configs.append(dict(base, method=method, composite=composite))
  return configs


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--archs", default="vgg16,alexnet")
  parser.add_argument("--batches", default="1,8")
  parser.add_argument("--methods", default="grad,torch_grad,lrp,captum")
  parser.add_argument("--reps", type=int, default=3)
  parser.add_argument("--warmup", type=int, default=1)
  parser.add_argument("--threads", type=int,
                      default=len(os.sched_getaffinity(0)))
  parser.add_argument("--xla_flags", default="",
                      help="extra XLA flags for every worker, e.g. "
                      "--xla_cpu_experimental_ynn_fusion_type=dot")
  parser.add_argument("--timeout", type=float, default=3600.0)
  parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" /
                                           "lrp.json"))
  parser.add_argument("--worker", help=argparse.SUPPRESS)
  parser.add_argument("--worker_out", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.worker:
    pathlib.Path(args.worker_out).write_text(
        json.dumps(worker(json.loads(args.worker))))
    return
  print(f"threads={args.threads} reps={args.reps} warmup={args.warmup} "
        f"load={os.getloadavg()[0]:.2f} xla_flags={args.xla_flags!r}")
  print(f"{'arch':8s} {'b':>2s} {'method':10s} {'composite':18s} "
        f"{'ms/img':>9s} {'min':>9s} {'/grad':>6s} {'same-proc':>9s} "
        f"{'/ours':>7s} "
        f"{'peak MiB':>9s} {'1st s':>7s}", flush=True)
  rows, ms = [], {}
  for cfg in _configs(args):
    row = dict(cfg, **run_worker(cfg, args.timeout))
    key = (cfg["arch"], cfg["batch"])
    if "error" in row:
      print(f"{cfg['arch']:8s} {cfg['batch']:2d} {cfg['method']:10s} "
            f"{cfg['composite'] or '-':18s} ERROR {row['error']}", flush=True)
      rows.append(row)
      continue
    ms[key + (cfg["method"], cfg["composite"])] = row["ms_per_image"]
    grad = ms.get(key + ("grad", None))
    if cfg["method"] != "grad" and grad:
      row["ratio_vs_grad"] = row["ms_per_image"] / grad
    ours = ms.get(key + ("lrp", cfg["composite"]))
    if cfg["method"] == "captum" and ours:
      row["captum_over_lrp"] = row["ms_per_image"] / ours
    if cfg["method"] == "torch_grad" and grad:
      row["torch_over_grad"] = row["ms_per_image"] / grad
    same = row.get("interleaved_captum_over_lrp",
                   row.get("interleaved_torch_over_grad", float("nan")))
    theirs = row.get("captum_over_lrp", row.get("torch_over_grad",
                                                float("nan")))
    print(f"{cfg['arch']:8s} {cfg['batch']:2d} {cfg['method']:10s} "
          f"{cfg['composite'] or '-':18s} {row['ms_per_image']:9.1f} "
          f"{row['ms_per_image_min']:9.1f} "
          f"{row.get('ratio_vs_grad', float('nan')):6.2f} "
          f"{row.get('interleaved_ratio_vs_grad', same):9.2f} "
          f"{theirs:7.2f} "
          f"{row['peak_rss_mib']:9.0f} {row['first_call_s']:7.1f}",
          flush=True)
    rows.append(row)
  write_json(args.out, {"argv": sys.argv[1:], "threads": args.threads,
                        "loadavg_end": os.getloadavg(),
                        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
                        "rows": rows})


if __name__ == "__main__":
  main()
