"""Explaining a folder of images: a resumable, crash-safe, sharded batch run.

For every input image `run` writes `<out>/<name>.npz` (every map of its
`SRResult`), the panel `<out>/<name>.png` and its thumbnail
(`sr_jax.runner.outputs`), then appends one record to its journal
(`results.jsonl`; `sr_jax.runner.journal` says why that makes a run killed at
any moment, then started again, do each image exactly once). Here `<name>` is
the image's path relative to the input folder (or to the fixed part of a
glob), extension included, so `cat.jpg` gives `cat.jpg.npz` and
`cat.jpg.png`. Images with a record are skipped; failed images are not
retried unless `retry_failed=True`. `<out>/run.json` keeps the configuration
(`sr_jax.runner.options`), and `<out>/index.html` shows the results
(`sr_jax.runner.report`), rewritten as the run goes.

Batches hold images whose crops have one size, `batch_size` per device,
the last one padded (with copies of its first image) to the full size, so
each crop size compiles once. With `num_devices > 1` (the default is every
local device; on CPU that is one unless opted in, see `sr_jax.runtime`)
the batch axis is sharded over a 1-D mesh "batch"
(`jax.sharding.NamedSharding`), and the saliency step splits the batch by
image over the same devices. Each device then runs the program that one
device runs with the same `batch_size`, so the results are those of one
device bit for bit (tests/test_batch.py). Other per-device batch sizes, or
other CPU thread pools, change float32 rounding, which the saliency's focus
threshold can turn into changes at a few pixels.

Many hosts. Under `jax.distributed` (`sr_jax.runner.hosts`) every process
calls `run` with the same arguments. Process 0 recovers the folder and finds
what is missing; each process then explains every n-th missing image
(`inputs.share`) on its own devices, into its own journal
`results.<process>.jsonl`; when all are done, each returns the summary of
the whole run, and process 0 writes it to `run.json` and the final report.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional, TextIO

import jax
import numpy as np

from sr_jax import sr
from sr_jax.models.loading import load_model
from sr_jax.runner import hosts, journal, options, outputs, report
from sr_jax.runner.inputs import batches, find_inputs, share
from sr_jax.runner.progress import progress

# `explain_fn(crops, timings) -> list[SRResult]`: uint8 NxHxWx3 crops in, one
# result per crop out; adds the seconds of its stages to the `timings` dict.
ExplainFn = Callable[[np.ndarray, dict], list]


@dataclasses.dataclass(frozen=True)
class Summary:
  """The state of an output folder after `run` (for the current inputs)."""

  done: int
  failed: int
  skipped: int
  mean_ssim_ratio: Optional[float]
  seconds: float
  processes: int = 1

  def __str__(self) -> str:
    ratio = self.mean_ssim_ratio
    ratio = "n/a" if ratio is None else f"{ratio:.4f}"
    hosts_text = f" on {self.processes} processes" if self.processes > 1 else ""
    return (f"done {self.done}, failed {self.failed} ({self.skipped} skipped "
            f"as already recorded), mean SSIM ratio {ratio}, "
            f"{self.seconds:.1f} s{hosts_text}")


def make_mesh(num_devices: Optional[int]) -> Optional[jax.sharding.Mesh]:
  """A 1-D mesh "batch" over this process's first `num_devices` devices
  (None for 1; `num_devices=None`: all of them, `jax.local_devices()`)."""
  devices = jax.local_devices()
  if num_devices is None:
    num_devices = len(devices)
  if not 1 <= num_devices <= len(devices):
    raise ValueError(f"`num_devices` (={num_devices}) must be in 1.."
                     f"{len(devices)} (the devices JAX sees: {devices}).")
  if num_devices == 1:
    return None
  return jax.sharding.Mesh(np.array(devices[:num_devices]), ("batch",))


class _Pages:
  """Rewrites `index.html` from every journal, at most once per `interval`."""

  def __init__(self, out: Path, names: list[str], *, interval: float,
               title: str, config: dict):
    self.out, self.names, self.interval = out, names, interval
    self.title, self.config = title, config
    self.reader = journal.Reader(out)
    self.last = -float("inf")

  def update(self, *, status: Optional[str] = None, force: bool = False) -> None:
    now = time.monotonic()
    if not force and now - self.last < self.interval:
      return
    recs = journal.records_of(self.reader.poll(), self.names)
    if status is None:
      status = (f"running: {len(recs)} of {len(self.names)} images recorded "
                f"(updated {time.strftime('%Y-%m-%d %H:%M:%S')})")
    report.write(self.out, recs, title=self.title, status=status,
                 config=self.config)
    self.last = now


def run(
    input: str,  # pylint: disable=redefined-builtin
    out: str,
    *,
    arch: Optional[str] = None,
    weights: Optional[str] = None,
    batch_size: int = 8,
    num_devices: Optional[int] = None,
    method: str = "lrp",
    method_options: Optional[dict[str, Any]] = None,
    composite: Optional[str] = None,
    relevance_image: str = "abs_rgb",
    retry_failed: bool = False,
    saliency_options: Optional[dict[str, Any]] = None,
    explain_fn: Optional[ExplainFn] = None,
    stream: TextIO = sys.stderr,
    report_interval: Optional[float] = 10.0,
    model: Optional[str] = None,
) -> Summary:
  """Explains every image of `input` into `out`; resumable and crash-safe.

  Args:
    input: a folder (its image files, not subfolders) or a glob pattern.
    out: the output folder (created if missing; shared by all processes).
    arch: architecture name (`sr_jax.models.ARCHS`; default "vgg16").
    weights: a safetensors weight file; None: `resolve_weights`.
    batch_size: images per batch and device.
    num_devices: this process's devices to shard each batch over (None: all
      of them, one per CPU core when sr_jax configured JAX); a batch holds
      `batch_size * num_devices` images. The saliency step uses the same
      devices unless `saliency_options` names its own `num_devices`.
    method: the attribution method of the SR map
      (`sr_jax.attribution.METHODS`).
    method_options: its keyword options (JSON-friendly values).
    composite: LRP composite name (alias of `method_options={"composite":
      ...}` for method "lrp"; default "sr_paper").
    relevance_image: see `sr_jax.sr.relevance_to_image`.
    retry_failed: redo images recorded as failed by an earlier run.
    saliency_options: keyword options of `context_aware_batch`.
    explain_fn: replaces the model, for tests: `explain_fn(crops, timings)`
      gets uint8 NxHxWx3 crops and returns one `SRResult` per crop.
    stream: where progress lines go.
    report_interval: the fewest seconds between two rewrites of
      `index.html` during the run (it is also written at the start and the
      end); None writes no report.
    model: the former name of `arch`, kept as an alias.

  Returns:
    A `Summary` of the whole run (every process); `failed > 0` means some
    inputs have a failure record.

  Raises:
    ValueError: for a bad argument, or an `out` of another configuration.
    RuntimeError: if another run holds `out`, or the processes of a
      multi-host run see different inputs.

  Each journal line holds "file" (the name), "status", and for "ok":
  "prediction" ({"index", "name", "probability"}), "ssim" (the
  `metrics.ssim_ratio` figures, None without image saliency), "timings"
  (seconds per stage: "load" (decode, resize, crop), "preprocess", "lrp",
  "saliency_relevance", "saliency_image", "edges" (each the batch's time
  over its images), "panel", "write", "ssim", "total") and "thumbnail" (the
  file name of the panel's thumbnail); for "failed": "stage" ("load",
  "explain" or "write") and "reason".
  """
  model = arch_name(arch, model)
  sr_config = sr.SRConfig.make(method=method, method_options=method_options,
                               composite=composite,
                               relevance_image=relevance_image,
                               saliency_options=saliency_options)
  if batch_size < 1:
    raise ValueError(f"`batch_size` (={batch_size}) must be >= 1.")
  if report_interval is not None and not report_interval >= 0:
    raise ValueError(
        f"`report_interval` (={report_interval!r}) must be None or >= 0.")
  start = time.perf_counter()
  mesh = make_mesh(num_devices)
  num_devices = 1 if mesh is None else mesh.size
  inputs = find_inputs(input, out)
  if not inputs:
    raise ValueError(f"`input` (={input!r}) names no image files.")
  names = [n for n, _ in inputs]
  process, count = hosts.process()
  outdir = Path(out)
  outdir.mkdir(parents=True, exist_ok=True)
  weights = options.resolve_weights(model, weights)
  class_names = sr.class_names(model, weights)
  config = {"model": model,
            "composite": sr_config.options().get("composite"),
            "weights": weights and os.path.abspath(weights),
            "relevance_image": relevance_image,
            "saliency_options": saliency_options or {}}
  if method != "lrp" or method_options:  # (older run.json files lack these)
    described = sr_config.describe()
    config.update(method=described["method"],
                  method_options=described["method_options"])
  options.check_config(outdir, config)
  with journal.exclusive(outdir, process=process):
    hosts.check_same_inputs(names)  # Every process holds its lock.
    recorded = np.zeros(len(inputs), bool)
    pages = None
    if process == 0:
      if options.read_config(outdir) is None:
        options.write_config(outdir, config)
      records = journal.consolidate(outdir, process=process, count=count,
                                    retry_failed=retry_failed)
      recorded = np.array([n in records for n in names])
      if report_interval is not None:
        pages = _Pages(outdir, names, interval=report_interval,
                       title=f"SR maps of {input}", config=config)
        pages.update(force=True)
    recorded = hosts.broadcast(recorded)  # Nobody writes before this.
    missing = [inputs[i] for i in np.flatnonzero(~recorded)]
    todo = share(missing, process=process, count=count)
    with journal.Writer(outdir, process=process, count=count) as writer:
      if explain_fn is None and todo:
        module, variables = load_model(model, weights)
        explain_fn = make_explainer(module, variables, arch=model,
                                    config=sr_config, mesh=mesh)
      desc = "explain" if count == 1 else f"explain [process {process}/{count}]"
      with progress(total=len(todo), desc=desc, unit="images", stream=stream,
                    postfix="0 failed") as bar:
        _process(todo, writer, explain_fn, model, batch_size * num_devices,
                 class_names, outdir, bar,
                 on_batch=pages.update if pages else None)
    hosts.barrier("sr_jax.runner: every process is done")
    recs = journal.records_of(journal.Reader(outdir).poll(), names)
    ratios = [r["ssim"]["ratio"] for r in recs if r["status"] == "ok"
              and r.get("ssim") and r["ssim"]["ratio"] is not None]
    failed = sum(r["status"] != "ok" for r in recs)
    summary = Summary(done=len(recs) - failed, failed=failed,
                      skipped=int(recorded.sum()),
                      mean_ssim_ratio=float(np.mean(ratios)) if ratios else None,
                      seconds=time.perf_counter() - start, processes=count)
    if process == 0:
      options.write_config(outdir, config, {
          **dataclasses.asdict(summary), "inputs": len(inputs),
          "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
      if pages is not None:
        pages.update(status=f"finished: {summary}", force=True)
  return summary


def arch_name(arch: Optional[str], model: Optional[str]) -> str:
  """The architecture from `arch` or its former name `model`."""
  if arch is not None and model is not None and arch != model:
    raise ValueError(
        f"`arch` (={arch!r}) and its alias `model` (={model!r}) disagree; "
        "give one.")
  return arch or model or "vgg16"


def explain_one(
    image: np.ndarray,
    out: str,
    name: str,
    *,
    arch: Optional[str] = None,
    weights: Optional[str] = None,
    target: Optional[int] = None,
    config: Optional[sr.SRConfig] = None,
    true_label: Any = None,
    model: Optional[str] = None,
    **sr_options: Any,
) -> tuple[sr.SRResult, Optional[tuple[str, ...]]]:
  """`sr_map` of one image, written as `<out>/<name>.npz` and `.png`.

  Args:
    image: uint8 image.
    out: output folder (created if missing).
    name: the output files' name before ".npz" / ".png".
    arch, weights: architecture and weight file (see `resolve_weights`).
    target: as in `sr_jax.sr.sr_map`.
    config: an `sr_jax.sr.SRConfig`, or its fields as keyword `sr_options`
      (method, method_options, composite, relevance_image,
      saliency_options), as in `sr_map`.
    true_label: ground truth shown on the panel (index or text).
    model: the former name of `arch`, kept as an alias.
    **sr_options: see `config`.

  Returns:
    The `SRResult` and the class names (None when the model has none).
  """
  arch = arch_name(arch, model)
  weights = options.resolve_weights(arch, weights)
  module, variables = load_model(arch, weights)
  names = sr.class_names(arch, weights)
  result = sr.sr_map(module, variables, image, arch=arch, target=target,
                     config=sr.config_from(config, sr_options))
  Path(out).mkdir(parents=True, exist_ok=True)
  outputs.write_outputs(Path(out), name, result, class_names=names,
                        true_label=true_label)
  return result, names


def make_explainer(module, variables, *, arch: str,
                   config: Optional[sr.SRConfig] = None,
                   mesh: Optional[jax.sharding.Mesh] = None,
                   **sr_options: Any) -> ExplainFn:
  """The runner's `explain_fn` for a loaded model, on `mesh`'s devices.

  The variables are replicated onto the mesh once, and the saliency step
  runs on the same devices (unless the saliency options name their own
  `num_devices`): with one device, or with a batch split by image over N,
  every image runs the same program, so N devices give the results of one
  bit for bit. `config` (or its fields as keyword `sr_options`) is the
  `sr_jax.sr.SRConfig` of the maps.
  """
  config = sr.config_from(config, sr_options)
  devices = 1 if mesh is None else mesh.size
  config = dataclasses.replace(config, saliency_options=sr.SRConfig.make(
      saliency_options={"num_devices": devices, **config.saliency()}
  ).saliency_options)
  if mesh is not None:  # Replicated once here, not at every batch.
    variables = jax.device_put(variables, jax.sharding.NamedSharding(
        mesh, jax.sharding.PartitionSpec()))

  def explain(crops: np.ndarray, timings: dict) -> list:
    return sr.explain_crops(module, variables, crops, arch=arch,
                            config=config, mesh=mesh, timings=timings)
  return explain


def _process(todo, writer, explain_fn, arch, size, names, outdir, bar, *,
             on_batch=None):
  """Explains `todo` batch by batch, committing one record per image."""
  failures = [0]

  def fail(name, stage, err):
    writer.commit(outputs.failed_record(name, stage, err))
    failures[0] += 1
    bar.set_postfix_str(f"{failures[0]} failed", refresh=False)
    bar.update()

  for group in batches(todo, arch=arch, size=size, fail=fail):
    crops = np.stack([c for _, c, _ in group])
    crops = np.concatenate([crops, np.repeat(crops[:1], size - len(group), 0)])
    timings: dict[str, float] = {}
    try:
      results = explain_fn(crops, timings)
      if len(results) != size:
        raise ValueError(f"`explain_fn` gave {len(results)} results for "
                         f"{size} images.")
    except Exception as e:  # pylint: disable=broad-except
      for name, _, _ in group:
        fail(name, "explain", e)
      continue
    shared = {k: v / len(group) for k, v in timings.items()}
    for (name, _, load_s), result in zip(group, results):
      try:
        stage = {"load": load_s, **shared,
                 **outputs.write_outputs(outdir, name, result,
                                         class_names=names,
                                         with_thumbnail=True)}
        t = time.perf_counter()
        ssim = outputs.ssim_figures(result)
        stage["ssim"] = time.perf_counter() - t
      except Exception as e:  # pylint: disable=broad-except
        fail(name, "write", e)
        continue
      stage["total"] = sum(stage.values())
      writer.commit(outputs.ok_record(name, result, class_names=names,
                                      ssim=ssim, timings=stage,
                                      with_thumbnail=True))
      bar.update()
    if on_batch is not None:
      on_batch()
