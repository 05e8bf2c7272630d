"""Forward-pass speed of AlexNet and VGG-16: JAX (jitted) beside PyTorch.

    python benchmarks/models.py                    # defaults, a few minutes
    python benchmarks/models.py --reps 20          # quieter figures
    python benchmarks/models.py --variants all     # every JAX variant tried
    python benchmarks/models.py --layers           # AlexNet's conv1 and pools

Every (framework, variant, architecture, batch) runs in a fresh subprocess, so
that each peak memory (VmHWM, which sees XLA's and torch's allocations alike)
and each allocator state is its own. Both frameworks get the same weights
(random, from a fixed seed, in both layouts), the same input and the same
thread count (`torch.set_num_threads` = the cores JAX's CPU client uses, i.e.
this process's CPU affinity). The table gives the median ms per image over
`--reps` timed calls after `--warmup` calls, the JAX/torch ratio, peak memory,
and the largest relative logit difference to torch (a check that both
computed the same thing). JSON goes to benchmarks/results/models.json.

`--layers` times single AlexNet layers instead, in one process per batch
size with every contender's calls interleaved (so that the ratios hold on a
shared machine): the 11x11 stride-4 first convolution, forward and
forward + input gradient, against torch's; and each max-pool (3x3, stride 2,
on ReLU output: ties at zero) forward + backward, ours (`max_pool`'s VJP)
against `nn.max_pool`'s (XLA's select_and_scatter) and torch's. JSON:
benchmarks/results/models_layers.json.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
from _common import run_json_worker, vmhwm_mib, write_json  # benchmarks/ is on sys.path
# glibc settings that keep freed memory for reuse (see
# sr_jax/runtime.py, which applies them on import of sr_jax).
MALLOC_ENV = {"MALLOC_ARENA_MAX": "1", "MALLOC_MMAP_MAX_": "0",
              "MALLOC_TRIM_THRESHOLD_": "-1"}
# Variants: framework, environment, how parameters reach jit, XLA flags.
VARIANTS = {
    "torch": {"framework": "torch"},  # glibc's defaults
    "torch_tuned": {"framework": "torch", "env": MALLOC_ENV},
    "jax": {},  # sr_jax's defaults: params as jit arguments, tuned malloc
    "jax_glibc": {"env": {"SR_JAX_TUNE_MALLOC": "0"}},
    "jax_closure": {"closure": True},
    "jax_donate": {"donate": True},
    "jax_no_eigen_threads": {
        "xla_flags": "--xla_cpu_multi_thread_eigen=false"},
    # XLA:CPU runs bias+ReLU+max-pool and dense layers as YNNPACK fusions
    # on a second thread pool beside Eigen's; this turns them off.
    "jax_no_ynn": {"xla_flags": "--xla_cpu_experimental_ynn_fusion_type="},
    "jax_xnn_dot": {"xla_flags": "--xla_cpu_experimental_xnn_fusion_type=dot"},
    # YNNPACK for single dot instructions only, no fused regions.
    "jax_ynn_individual_dot": {
        "xla_flags": "--xla_cpu_experimental_ynn_fusion_type=individual_dot"},
    "jax_onednn": {"xla_flags": "--xla_cpu_use_onednn=true"},
}
DEFAULT_VARIANTS = ("torch", "torch_tuned", "jax", "jax_glibc")


def page_touch_us(mib: int = 256, reps: int = 4) -> dict[str, float]:
  """Wall microseconds to first-touch a fresh 4 KiB page vs a reused one."""
  import mmap  # pylint: disable=import-outside-toplevel
  n = mib << 20
  reused = mmap.mmap(-1, n)

  def touch(m):
    for i in range(0, n, 4096):
      m[i] = 1

  def fresh():
    with mmap.mmap(-1, n) as m:
      touch(m)

  touch(reused)
  out = {}
  for name, call in (("fresh", fresh), ("reused", lambda: touch(reused))):
    t = time.perf_counter()
    for _ in range(reps):
      call()
    out[name] = 1e6 * (time.perf_counter() - t) / reps / (n // 4096)
  reused.close()
  return out


def _flax_weights(arch: str):
  """Random float32 variables for `arch`, flat by name (NumPy only)."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  from sr_jax import weights  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  flat = {}
  for name, shape in weights.expected_shapes(arch).items():
    if name.endswith("/kernel"):
      v = rng.standard_normal(shape, np.float32)
      v *= np.float32(np.sqrt(2.0 / np.prod(shape[:-1])))
    elif name.endswith(("/var", "/scale")):
      v = rng.uniform(0.5, 2.0, shape).astype(np.float32)
    else:
      v = rng.uniform(-0.1, 0.1, shape).astype(np.float32)
    flat[name] = v
  return flat


def _torch_state_dict(flat):
  """Our flat Flax variables back in torchvision's layout."""
  import torch  # pylint: disable=import-outside-toplevel
  names = {"kernel": "weight", "scale": "weight", "mean": "running_mean",
           "var": "running_var"}
  sd = {}
  for name, v in flat.items():
    _, module, leaf = name.split("/")
    if leaf == "kernel":
      v = v.transpose(3, 2, 0, 1) if v.ndim == 4 else v.T
    key = module.replace("_", ".", 1)
    sd[f"{key}.{names.get(leaf, leaf)}"] = torch.from_numpy(v.copy())
  return sd


def _time(call, reps: int, warmup: int):
  """Wall and CPU seconds of `reps` calls after `warmup`, and page faults."""
  for _ in range(warmup):
    call()
  wall, cpu = [], []
  faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  for _ in range(reps):
    t, c = time.perf_counter(), time.process_time()
    call()
    wall.append(time.perf_counter() - t)
    cpu.append(time.process_time() - c)
  faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
  return wall, cpu, faults / max(reps, 1)


def _interleaved_ms(calls: dict, reps: int, warmup: int) -> dict[str, float]:
  """Median ms of each call, the calls alternated round-robin."""
  for _ in range(max(warmup, 1)):
    for call in calls.values():
      call()
  times = {name: [] for name in calls}
  for _ in range(reps):
    for name, call in calls.items():
      t = time.perf_counter()
      call()
      times[name].append(time.perf_counter() - t)
  return {name: 1e3 * statistics.median(t) for name, t in times.items()}


# AlexNet's pools at 224 px: (height = width, channels) of their inputs.
ALEXNET_POOLS = {"features_2": (55, 64), "features_5": (27, 192),
                 "features_12": (13, 256)}


def layers_worker(cfg: dict) -> dict:
  """AlexNet's first conv and pools alone, ours and torch's interleaved."""
  import flax.linen as nn  # pylint: disable=import-outside-toplevel
  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  import torch  # pylint: disable=import-outside-toplevel
  from sr_jax.models import layers  # pylint: disable=import-outside-toplevel
  torch.set_num_threads(cfg["threads"])
  rng, b, rows = np.random.default_rng(0), cfg["batch"], []
  nchw = lambda a: torch.from_numpy(np.asarray(a).transpose(0, 3, 1, 2).copy())

  def torch_vjp(module, x, g):
    x = x.clone().requires_grad_()
    y = module(x)
    return y, torch.autograd.grad(y, x, g)[0]

  def measure(name, calls, diff):
    ms = _interleaved_ms(calls, cfg["reps"], cfg["warmup"])
    rows.append(dict(layer=name, batch=b, max_abs_diff=diff,
                     ms_per_image={k: v / b for k, v in ms.items()}))

  def compare(name, fns, module, x):
    """Value + input gradient of each JAX fn in `fns` and of `module`."""
    xj, xt = jax.numpy.asarray(x), nchw(x)
    g = rng.standard_normal(jax.eval_shape(fns["ours"], xj).shape)
    gj, gt = jax.numpy.asarray(g, np.float32), nchw(g.astype(np.float32))
    vjps = {k: jax.jit(lambda x, g, f=f: (lambda y, vjp: (y, vjp(g)[0]))(
        *jax.vjp(f, x))) for k, f in fns.items()}
    want = torch_vjp(module, xt, gt)[1].numpy()
    diff = max(float(np.abs(nchw(v(xj, gj)[1]).numpy() - want).max())
               for v in vjps.values())
    calls = {k: lambda v=v: jax.block_until_ready(v(xj, gj))
             for k, v in vjps.items()}
    measure(name, dict(calls, torch=lambda: torch_vjp(module, xt, gt)), diff)

  flat = {k: v for k, v in _flax_weights("alexnet").items()
          if "/features_0/" in k}
  variables = {"params": {k.split("/")[-1]: jax.numpy.asarray(v)
                          for k, v in flat.items()}}
  conv = lambda x: layers.conv(64, 11, stride=4, padding=2).apply(variables, x)
  tconv = torch.nn.Conv2d(3, 64, 11, stride=4, padding=2).requires_grad_(False)
  tconv.load_state_dict({k.split(".")[-1]: v for k, v in
                         _torch_state_dict(flat).items()})
  x = rng.standard_normal((b, 224, 224, 3)).astype(np.float32)
  xj, xt, fwd = jax.numpy.asarray(x), nchw(x), jax.jit(conv)
  with torch.inference_mode():
    diff = float(np.abs(nchw(fwd(xj)).numpy() - tconv(xt).numpy()).max())
    measure("features_0 fwd", {"ours": lambda: fwd(xj).block_until_ready(),
                               "torch": lambda: tconv(xt)}, diff)
  compare("features_0 fwd+bwd", {"ours": conv}, tconv, x)
  for name, (hw, c) in ALEXNET_POOLS.items():
    x = np.maximum(rng.standard_normal((b, hw, hw, c)), 0).astype(np.float32)
    compare(f"{name} fwd+bwd",
            {"ours": lambda v: layers.max_pool(v, 3, stride=2),
             "nn.max_pool": lambda v: nn.max_pool(v, (3, 3), (2, 2))},
            torch.nn.MaxPool2d(3, 2), x)
  return {"rows": rows}


def worker(cfg: dict) -> dict:
  """Measures one configuration; runs in its own process."""
  # Both frameworks size their thread pools before the first import: JAX's
  # CPU client to the affinity mask, torch to `set_num_threads`.
  os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:cfg["threads"]])
  if cfg.get("layers"):
    import sr_jax  # pylint: disable=import-outside-toplevel,unused-import
    return layers_worker(cfg)
  if cfg["framework"] == "jax":
    import sr_jax  # pylint: disable=import-outside-toplevel,unused-import
  import numpy as np  # pylint: disable=import-outside-toplevel
  arch, batch = cfg["arch"], cfg["batch"]
  flat = _flax_weights(arch)
  x = np.random.default_rng(1).standard_normal(
      (batch, 224, 224, 3)).astype(np.float32)
  result = {}
  if cfg["framework"] == "torch":
    import torch  # pylint: disable=import-outside-toplevel
    sys.path.insert(0, str(ROOT))
    from tests.reference import torch_models  # pylint: disable=import-outside-toplevel
    torch.set_num_threads(cfg["threads"])
    model = torch_models.build(arch)
    model.load_state_dict(_torch_state_dict(flat))
    del flat
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    with torch.inference_mode():
      t = time.perf_counter()
      logits = model(xt).numpy()
      result["first_call_s"] = time.perf_counter() - t
      times, cpu, faults = _time(lambda: model(xt), cfg["reps"],
                                 cfg["warmup"])
  else:
    import jax  # pylint: disable=import-outside-toplevel
    import sr_jax  # pylint: disable=import-outside-toplevel
    from sr_jax import weights  # pylint: disable=import-outside-toplevel
    variables = jax.tree.map(jax.numpy.asarray, weights.unflatten(flat))
    del flat
    model = sr_jax.models.get_arch(arch).module()
    xj = jax.numpy.asarray(x)
    if cfg.get("closure"):
      f = jax.jit(lambda x: model.apply(variables, x))
      call = lambda: f(xj).block_until_ready()
    elif cfg.get("donate"):
      f = jax.jit(model.apply, donate_argnums=1)
      call = lambda: f(variables, jax.numpy.array(x)).block_until_ready()
    else:
      f = jax.jit(model.apply)
      call = lambda: f(variables, xj).block_until_ready()
    t = time.perf_counter()
    logits = np.asarray(call())
    result["first_call_s"] = time.perf_counter() - t
    times, cpu, faults = _time(call, cfg["reps"], cfg["warmup"])
    result["jax_threads"] = len(os.sched_getaffinity(0))
  result.update(
      ms_per_image=1e3 * statistics.median(times) / batch,
      ms_per_image_min=1e3 * min(times) / batch,
      cpu_ms_per_image=1e3 * statistics.median(cpu) / batch,
      page_faults_per_image=faults / batch,
      times_s=times, cpu_s=cpu, peak_rss_mib=vmhwm_mib(),
      logits0=[float(v) for v in logits[0]])
  return result


def run_worker(cfg: dict, timeout: float) -> dict:
  """Runs `worker(cfg)` in a fresh interpreter with the variant's env."""
  env = dict(cfg.get("env", {}))
  if cfg.get("xla_flags"):
    env["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " +
                        cfg["xla_flags"])
  return run_json_worker(__file__, cfg, timeout, env)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--archs", default="alexnet,vgg16")
  parser.add_argument("--batches", default="1,8")
  parser.add_argument("--reps", type=int, default=5)
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--threads", type=int,
                      default=len(os.sched_getaffinity(0)))
  parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                      help=f"JAX variants, or 'all': {', '.join(VARIANTS)}")
  parser.add_argument("--layers", action="store_true",
                      help="time AlexNet's first conv and pools alone")
  parser.add_argument("--timeout", type=float, default=1800.0)
  parser.add_argument("--out", help="JSON path; default: benchmarks/results/"
                      "models.json (models_layers.json with --layers)")
  parser.add_argument("--worker", help=argparse.SUPPRESS)
  parser.add_argument("--worker_out", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.worker:
    pathlib.Path(args.worker_out).write_text(
        json.dumps(worker(json.loads(args.worker))))
    return
  if args.out is None:
    args.out = str(ROOT / "benchmarks" / "results" /
                   ("models_layers.json" if args.layers else "models.json"))
  if args.layers:
    write_json(args.out, {"argv": sys.argv[1:], "threads": args.threads,
                          "time": time.strftime("%Y-%m-%d %H:%M:%S"),
                          "rows": _layer_table(args)})
    return
  variants = list(VARIANTS) if args.variants == "all" else \
      args.variants.split(",")
  configs = []
  for arch in args.archs.split(","):
    for batch in (int(b) for b in args.batches.split(",")):
      base = {"arch": arch, "batch": batch, "reps": args.reps,
              "warmup": args.warmup, "threads": args.threads,
              "framework": "jax"}
      configs += [dict(base, variant=v, **VARIANTS[v]) for v in variants]
  rows = []
  header = (f"{'arch':8s} {'b':>2s} {'variant':22s} {'ms/img':>8s} "
            f"{'min':>8s} {'cpu ms':>8s} {'/torch':>7s} {'/tuned':>7s} "
            f"{'peak MiB':>9s} "
            f"{'faults/img':>10s} {'1st call s':>10s} {'rel Δlogit':>10s}")
  touch = page_touch_us()
  print(f"threads={args.threads} reps={args.reps} warmup={args.warmup} "
        f"load={os.getloadavg()[0]:.2f}; page first touch "
        f"{touch['fresh']:.2f} us, reused {touch['reused']:.2f} us (incl. "
        f"Python's loop)\n{header}", flush=True)
  torch_logits, torch_ms = {}, {}
  for cfg in configs:
    res = run_worker(cfg, args.timeout)
    row = dict(cfg, **res)
    key = (cfg["arch"], cfg["batch"])
    logits = row.pop("logits0", None)
    if cfg["framework"] == "torch" and "error" not in res:
      torch_logits.setdefault(key, logits)
      torch_ms[key + (cfg["variant"],)] = row["ms_per_image"]
    if "error" not in res and key in torch_logits:
      import numpy as np  # pylint: disable=import-outside-toplevel
      a, b = np.asarray(logits), np.asarray(torch_logits[key])
      row["rel_logit_diff"] = float(np.abs(a - b).max() / np.abs(b).max())
    for ref in ("torch", "torch_tuned"):
      if "error" not in res and key + (ref,) in torch_ms:
        row[f"ratio_vs_{ref}"] = row["ms_per_image"] / torch_ms[key + (ref,)]
    name = cfg["variant"]
    if "error" in res:
      print(f"{cfg['arch']:8s} {cfg['batch']:2d} {name:22s} ERROR "
            f"{res['error']}", flush=True)
    else:
      print(f"{cfg['arch']:8s} {cfg['batch']:2d} {name:22s} "
            f"{row['ms_per_image']:8.1f} {row['ms_per_image_min']:8.1f} "
            f"{row['cpu_ms_per_image']:8.1f} "
            f"{row.get('ratio_vs_torch', float('nan')):7.2f} "
            f"{row.get('ratio_vs_torch_tuned', float('nan')):7.2f} "
            f"{row['peak_rss_mib']:9.0f} {row['page_faults_per_image']:10.0f} "
            f"{row['first_call_s']:10.2f} "
            f"{row.get('rel_logit_diff', float('nan')):10.1e}", flush=True)
    rows.append(row)
  write_json(args.out, {"argv": sys.argv[1:], "threads": args.threads,
                        "page_touch_us": touch,
                        "loadavg_end": os.getloadavg(),
                        "malloc_env": MALLOC_ENV,
                        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
                        "rows": rows})


def _layer_table(args) -> list[dict]:
  """Runs `layers_worker` per batch size and prints its ratios."""
  print(f"threads={args.threads} reps={args.reps} load="
        f"{os.getloadavg()[0]:.2f}; ms per image, calls interleaved\n"
        f"{'layer':22s} {'b':>2s} {'ours':>8s} {'nn.max_pool':>11s} "
        f"{'torch':>8s} {'/nn.max_pool':>12s} {'/torch':>7s} "
        f"{'max|Δ|':>8s}", flush=True)
  rows = []
  for batch in (int(b) for b in args.batches.split(",")):
    res = run_worker({"layers": True, "batch": batch, "reps": args.reps,
                      "warmup": args.warmup, "threads": args.threads,
                      "framework": "jax"}, args.timeout)
    if "error" in res:
      print(f"layers {batch:2d} ERROR {res['error']}", flush=True)
      rows.append(dict(batch=batch, **res))
      continue
    for row in res["rows"]:
      ms = row["ms_per_image"]
      for ref in ("nn.max_pool", "torch"):
        if ref in ms:
          row[f"ours_over_{ref}"] = ms["ours"] / ms[ref]
      print(f"{row['layer']:22s} {batch:2d} {ms['ours']:8.2f} "
            f"{ms.get('nn.max_pool', float('nan')):11.2f} "
            f"{ms['torch']:8.2f} "
            f"{row.get('ours_over_nn.max_pool', float('nan')):12.2f} "
            f"{row['ours_over_torch']:7.2f} {row['max_abs_diff']:8.1e}",
            flush=True)
      rows.append(row)
  return rows


if __name__ == "__main__":
  main()
