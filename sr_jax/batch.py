"""Explaining a folder of images: a resumable, crash-safe, sharded batch run.

For every input image `run` writes `<out>/<name>.npz` (every map of its
`SRResult`) and the panel `<out>/<name>.png`, then appends one line to
`<out>/results.jsonl`. Here `<name>` is the image's path relative to the input
folder (or to the fixed part of a glob), extension included, so `cat.jpg`
gives `cat.jpg.npz` and `cat.jpg.png`.

Crash safety. `results.jsonl` is the commit log and the only record of what is
done: one line per input image, `"status": "ok"` or `"failed"` (with the
reason), appended with a single `write` and `fsync`ed *after* the image's
files were written (to a temporary name, then `os.replace`d into place by
`sr_jax.io`). A run killed at any moment therefore leaves committed images
complete, and anything else uncommitted. On start, `run`

1. takes an exclusive lock on `<out>/.lock` (a second concurrent run fails);
2. deletes temporary files a killed writer left behind;
3. reads `results.jsonl`, drops a partial last line (a kill mid-write), any
   unreadable line, any repeated record of a file, and any "ok" record whose
   `.npz` or `.png` has gone, and rewrites the log atomically if it dropped
   anything;
4. rebuilds `failures.jsonl` (a derived view of the failed records).

Images with a record are skipped; all others are (re)done, their files
overwritten atomically. Each image is thus done exactly once, whatever moment
a SIGKILL comes at. Failed images are not retried unless `retry_failed=True`.
`<out>/run.json` keeps the configuration; re-running the same `out` with
another model or composite is refused, so records never mix configurations.

Batches hold images whose crops have one size, `batch_size` per device,
the last one padded (with copies of its first image) to the full size, so
each crop size compiles once. With `num_devices > 1` (the default is every
device JAX sees; on CPU that is one unless opted in, see `sr_jax.runtime`)
the batch axis is sharded over a 1-D mesh "batch"
(`jax.sharding.NamedSharding`), and the saliency step splits the batch by
image over the same devices. Each device then runs the program that one
device runs with the same `batch_size`, so the results are those of one
device bit for bit (tests/test_batch.py). Other
per-device batch sizes, or other CPU thread pools, change float32 rounding,
which the saliency's focus threshold can turn into changes at a few pixels.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import glob
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence, TextIO

import jax
import numpy as np

from sr_jax import io, metrics, sr, viz
from sr_jax.models.registry import load_model

RESULTS, FAILURES, CONFIG, LOCK = ("results.jsonl", "failures.jsonl",
                                   "run.json", ".lock")

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

  def __str__(self) -> str:
    ratio = self.mean_ssim_ratio
    ratio = "n/a" if ratio is None else f"{ratio:.4f}"
    return (f"done {self.done}, failed {self.failed} ({self.skipped} skipped "
            f"as already recorded), mean SSIM ratio {ratio}, "
            f"{self.seconds:.1f} s")


def find_inputs(input: str, out: str) -> list[tuple[str, Path]]:  # pylint: disable=redefined-builtin
  """(name, path) of every input image, sorted; `out` is never an input.

  `name` is the path relative to the folder `input` names, or to the part of
  a glob before its first wildcard, in POSIX form.
  """
  text = os.fspath(input)
  if os.path.isdir(text):
    root = Path(text)
  elif glob.has_magic(text):
    parts = Path(text).parts
    first = next(i for i, p in enumerate(parts) if glob.has_magic(p))
    root = Path(*parts[:first]) if first else Path(".")
  else:
    root = Path(text).parent
  out_dir = Path(out).resolve()
  found = []
  for p in io.list_images(text):
    if out_dir == p.resolve() or out_dir in p.resolve().parents:
      continue
    found.append((p.relative_to(root).as_posix(), p))
  return found


class _Journal:
  """`results.jsonl` as a commit log (see the module docstring)."""

  def __init__(self, out: Path):
    self.out, self.path = out, out / RESULTS
    self.records: dict[str, dict] = {}
    self._fd: Optional[int] = None

  def recover(self, retry_failed: bool) -> None:
    for dirpath, _, _ in os.walk(self.out):
      io.remove_temp_files(dirpath)
    data = self.path.read_bytes() if self.path.exists() else b""
    lines = data.split(b"\n")
    kept, dirty = [], bool(lines[-1])  # No final newline: partial last line.
    for line in lines[:-1]:
      try:
        rec = json.loads(line)
        key, ok = rec["file"], rec["status"] == "ok"
      except (ValueError, KeyError, TypeError):
        dirty = True
        continue
      if (key in self.records or (ok and not self._outputs_exist(key))
          or (retry_failed and not ok)):
        dirty = True
        continue
      self.records[key] = rec
      kept.append(line + b"\n")
    if dirty:
      io.atomic_write(self.path, b"".join(kept))
    failed = [self._failure_line(r) for r in self.records.values()
              if r["status"] != "ok"]
    io.atomic_write(self.out / FAILURES, "".join(failed).encode())
    self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

  def _outputs_exist(self, key: str) -> bool:
    return all((self.out / f"{key}{ext}").is_file() for ext in (".npz", ".png"))

  @staticmethod
  def _failure_line(rec: dict) -> str:
    return json.dumps({k: rec.get(k) for k in ("file", "stage", "reason")}) + "\n"

  def commit(self, rec: dict) -> None:
    """Appends `rec` durably; it is the image's record from now on."""
    line = memoryview((json.dumps(rec) + "\n").encode())
    while line:
      line = line[os.write(self._fd, line):]
    os.fsync(self._fd)
    self.records[rec["file"]] = rec
    if rec["status"] != "ok":
      with open(self.out / FAILURES, "a", encoding="utf-8") as f:
        f.write(self._failure_line(rec))

  def __enter__(self) -> "_Journal":
    return self

  def __exit__(self, *exc) -> None:
    if self._fd is not None:
      os.close(self._fd)
      self._fd = None


@contextlib.contextmanager
def _exclusive(out: Path) -> Iterator[None]:
  """Holds an exclusive lock on `out` (released by the OS if killed)."""
  with open(out / LOCK, "w", encoding="utf-8") as lock:
    try:
      fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      raise RuntimeError(
          f"`out` (={str(out)!r}) is in use by another run.") from None
    yield


def write_outputs(out: Path, name: str, result: sr.SRResult, *,
                  class_names: Optional[Sequence[str]] = None,
                  true_label: Any = None) -> dict[str, float]:
  """Writes `<name>.npz` (every map) and the panel `<name>.png`, atomically.

  Returns:
    Seconds spent drawing the panel ("panel") and writing both files ("write").
  """
  npz, png = Path(out) / f"{name}.npz", Path(out) / f"{name}.png"
  npz.parent.mkdir(parents=True, exist_ok=True)
  t0 = time.perf_counter()
  panel = viz.panel(result.image, result, labels=class_names,
                    true_label=true_label, title=name)
  t1 = time.perf_counter()
  io.save_npz(npz, **result.arrays())
  io.save_png(png, panel)
  return {"panel": t1 - t0, "write": time.perf_counter() - t1}


def ssim_figures(result: sr.SRResult) -> Optional[dict[str, Optional[float]]]:
  """`sr_jax.metrics.ssim_ratio` of a result, for JSON (None: not finite),
  or None when the result has no image saliency."""
  if result.image_saliency is None:
    return None
  s = metrics.ssim_ratio(result.relevance, result.sr, result.image_saliency)
  return {k: float(v) if np.isfinite(v) else None
          for k, v in s._asdict().items()}


class Progress:
  """Images done and failed, images/s and ETA, on one updating line."""

  def __init__(self, total: int, stream: TextIO):
    self.total, self.ok, self.failed, self.stream = total, 0, 0, stream
    self.start = self.shown = time.perf_counter()
    self.tty = getattr(stream, "isatty", lambda: False)()

  def update(self, *, ok: int = 0, failed: int = 0) -> None:
    self.ok += ok
    self.failed += failed
    count, now = self.ok + self.failed, time.perf_counter()
    if not self.tty and now - self.shown < 1.0 and count < self.total:
      return  # A log file gets at most a line a second.
    self.shown, elapsed = now, now - self.start
    rate = count / elapsed if elapsed > 0 else 0.0
    eta = (time.strftime("%H:%M:%S", time.gmtime((self.total - count) / rate))
           if rate > 0 else "?")
    line = (f"{count}/{self.total} images ({self.failed} failed), "
            f"{rate:.2f} images/s, ETA {eta}")
    self.stream.write(("\r" + line) if self.tty else line + "\n")
    self.stream.flush()

  def close(self) -> None:
    if self.tty:
      self.stream.write("\n")


def make_mesh(num_devices: Optional[int]) -> Optional[jax.sharding.Mesh]:
  """A 1-D mesh "batch" over the first `num_devices` devices (None for 1;
  `num_devices=None`: all that JAX sees)."""
  devices = jax.devices()
  if num_devices is None:
    num_devices = len(devices)
  if not 1 <= num_devices <= len(devices):
    raise ValueError(f"`num_devices` (={num_devices}) must be in 1.."
                     f"{len(devices)} (the devices JAX sees: {devices}).")
  if num_devices == 1:
    return None
  return jax.sharding.Mesh(np.array(devices[:num_devices]), ("batch",))


def _batches(todo, arch, size, fail) -> Iterator[list[tuple[str, np.ndarray, float]]]:
  """Groups of up to `size` (name, crop, load seconds) of one crop size."""
  pending: dict[tuple[int, ...], list] = {}
  for name, path in todo:
    t = time.perf_counter()
    try:
      crop = sr.prepare(io.load_image(path), arch=arch)
    except Exception as e:  # pylint: disable=broad-except
      fail(name, "load", e)
      continue
    group = pending.setdefault(crop.shape, [])
    group.append((name, crop, time.perf_counter() - t))
    if len(group) == size:
      yield pending.pop(crop.shape)
  yield from pending.values()


def _check_config(out: Path, config: dict) -> None:
  path = out / CONFIG
  if path.exists():
    old = json.loads(path.read_text(encoding="utf-8"))
    diff = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
    if diff:
      raise ValueError(
          f"`out` (={str(out)!r}) holds results of another configuration "
          f"(differs in {', '.join(diff)}: was {[old.get(k) for k in diff]}, "
          f"now {[config.get(k) for k in diff]}); use another `out`.")
  else:
    io.atomic_write(path, (json.dumps(config, indent=1) + "\n").encode())


def run(
    input: str,  # pylint: disable=redefined-builtin
    out: str,
    *,
    model: str = "vgg16",
    weights: Optional[str] = None,
    batch_size: int = 8,
    num_devices: Optional[int] = None,
    composite: str = "sr_paper",
    relevance_image: str = "abs_rgb",
    retry_failed: bool = False,
    saliency_options: Optional[dict[str, Any]] = None,
    explain_fn: Optional[ExplainFn] = None,
    stream: TextIO = sys.stderr,
) -> Summary:
  """Explains every image of `input` into `out`; resumable and crash-safe.

  Args:
    input: a folder (its image files, not subfolders) or a glob pattern.
    out: the output folder (created if missing).
    model: architecture name (`sr_jax.models.ARCHS`).
    weights: a safetensors weight file; None: `resolve_weights`.
    batch_size: images per batch and device.
    num_devices: devices to shard each batch over (None: all that JAX sees,
      one per CPU core when sr_jax configured JAX); a batch holds
      `batch_size * num_devices` images. The saliency step uses the same
      devices unless `saliency_options` names its own `num_devices`.
    composite: LRP composite name.
    relevance_image: see `sr_jax.sr.relevance_to_image`.
    retry_failed: redo images recorded as failed by an earlier run.
    saliency_options: keyword options of `context_aware_batch`.
    explain_fn: replaces the model, for tests: `explain_fn(crops, timings)`
      gets uint8 NxHxWx3 crops and returns one `SRResult` per crop.
    stream: where progress lines go.

  Returns:
    A `Summary`; `failed > 0` means some inputs have a failure record.

  Each line of `results.jsonl` holds "file" (the name), "status", and for
  "ok": "prediction" ({"index", "name", "probability"}), "ssim" (the
  `metrics.ssim_ratio` figures, None without image saliency) and "timings"
  (seconds per stage: "load" (decode, resize, crop), "preprocess", "lrp",
  "saliency_relevance", "saliency_image", "edges" (each the batch's time
  over its images), "panel", "write", "ssim", "total"); for "failed":
  "stage" ("load", "explain" or "write") and "reason".
  """
  if batch_size < 1:
    raise ValueError(f"`batch_size` (={batch_size}) must be >= 1.")
  start = time.perf_counter()
  mesh = make_mesh(num_devices)
  num_devices = 1 if mesh is None else mesh.size
  inputs = find_inputs(input, out)
  if not inputs:
    raise ValueError(f"`input` (={input!r}) names no image files.")
  outdir = Path(out)
  outdir.mkdir(parents=True, exist_ok=True)
  weights = resolve_weights(model, weights)
  names = sr.class_names(model, weights)
  config = {"model": model, "composite": composite,
            "weights": weights and os.path.abspath(weights),
            "relevance_image": relevance_image,
            "saliency_options": saliency_options or {}}
  with _exclusive(outdir), _Journal(outdir) as journal:
    _check_config(outdir, config)
    journal.recover(retry_failed)
    todo = [(n, p) for n, p in inputs if n not in journal.records]
    if explain_fn is None and todo:
      module, variables = load_model(model, weights)
      explain_fn = make_explainer(
          module, variables, arch=model, composite=composite,
          relevance_image=relevance_image, saliency_options=saliency_options,
          mesh=mesh)
    _process(todo, journal, explain_fn, model, batch_size * num_devices,
             names, outdir, Progress(len(todo), stream))
  recs = [journal.records[n] for n, _ in inputs]
  ratios = [r["ssim"]["ratio"] for r in recs if r["status"] == "ok"
            and r.get("ssim") and r["ssim"]["ratio"] is not None]
  failed = sum(r["status"] != "ok" for r in recs)
  return Summary(done=len(recs) - failed, failed=failed,
                 skipped=len(inputs) - len(todo),
                 mean_ssim_ratio=float(np.mean(ratios)) if ratios else None,
                 seconds=time.perf_counter() - start)


def parse_options(text: str) -> dict[str, Any]:
  """A JSON object given on a command line, e.g. '{"max_side": null}'."""
  try:
    value = json.loads(text)
  except ValueError as e:
    raise ValueError(f"`saliency_options` (={text!r}) is not JSON: {e}") from None
  if not isinstance(value, dict):
    raise ValueError(f"`saliency_options` (={text!r}) must be a JSON object.")
  return value


def resolve_weights(model: str, weights: Optional[str]) -> Optional[str]:
  """`weights`, or else the file shipped for `model` (None: random weights)."""
  if weights:
    return weights
  from sr_jax import weights as weights_lib  # pylint: disable=import-outside-toplevel
  bundled = weights_lib.bundled_path(model)
  return None if bundled is None else os.fspath(bundled)


def explain_one(
    image: np.ndarray,
    out: str,
    name: str,
    *,
    model: str = "vgg16",
    weights: Optional[str] = None,
    target: Optional[int] = None,
    composite: str = "sr_paper",
    relevance_image: str = "abs_rgb",
    saliency_options: Optional[dict[str, Any]] = None,
    true_label: Any = None,
) -> tuple[sr.SRResult, Optional[tuple[str, ...]]]:
  """`sr_map` of one image, written as `<out>/<name>.npz` and `.png`.

  Args:
    image: uint8 image.
    out: output folder (created if missing).
    name: the output files' name before ".npz" / ".png".
    model, weights: architecture and weight file (see `resolve_weights`).
    target, composite, relevance_image: as in `sr_jax.sr.sr_map`.
    saliency_options: keyword options of `sr_jax.saliency.context_aware`.
    true_label: ground truth shown on the panel (index or text).

  Returns:
    The `SRResult` and the class names (None when the model has none).
  """
  weights = resolve_weights(model, weights)
  module, variables = load_model(model, weights)
  names = sr.class_names(model, weights)
  result = sr.sr_map(module, variables, image, arch=model, target=target,
                     composite=composite, relevance_image=relevance_image,
                     **(saliency_options or {}))
  Path(out).mkdir(parents=True, exist_ok=True)
  write_outputs(Path(out), name, result, class_names=names,
                true_label=true_label)
  return result, names


def make_explainer(module, variables, *, arch: str, composite: str,
                   relevance_image: str,
                   saliency_options: Optional[dict[str, Any]],
                   mesh: Optional[jax.sharding.Mesh]) -> ExplainFn:
  """The runner's `explain_fn` for a loaded model, on `mesh`'s devices.

  The variables are replicated onto the mesh once, and the saliency step
  runs on the same devices (unless `saliency_options` names its own
  `num_devices`): with one device, or with a batch split by image over N,
  every image runs the same program, so N devices give the results of one
  bit for bit.
  """
  devices = 1 if mesh is None else mesh.size
  opts = {"num_devices": devices, **(saliency_options or {})}
  if mesh is not None:  # Replicated once here, not at every batch.
    variables = jax.device_put(variables, jax.sharding.NamedSharding(
        mesh, jax.sharding.PartitionSpec()))

  def explain(crops: np.ndarray, timings: dict) -> list:
    return sr.explain_crops(module, variables, crops, arch=arch,
                            composite=composite,
                            relevance_image=relevance_image,
                            saliency_options=opts, mesh=mesh,
                            timings=timings)
  return explain


def _process(todo, journal, explain_fn, arch, size, names, outdir, progress):
  """Explains `todo` batch by batch, committing one record per image."""

  def fail(name, stage, err):
    journal.commit({"file": name, "status": "failed", "stage": stage,
                    "reason": f"{type(err).__name__}: {err}"})
    progress.update(failed=1)

  for group in _batches(todo, arch, size, fail):
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
                 **write_outputs(outdir, name, result, class_names=names)}
        t = time.perf_counter()
        ssim = ssim_figures(result)
        stage["ssim"] = time.perf_counter() - t
      except Exception as e:  # pylint: disable=broad-except
        fail(name, "write", e)
        continue
      stage["total"] = sum(stage.values())
      journal.commit({
          "file": name, "status": "ok",
          "prediction": {"index": result.target,
                         "name": None if names is None else names[result.target],
                         "probability": result.probability},
          "ssim": ssim, "timings": {k: round(v, 6) for k, v in stage.items()}})
      progress.update(ok=1)
  progress.close()
