"""The evaluation run: every variant on every image, resumable.

`evaluate` loads the model(s) and the images, then for each batch of images
and each variant computes the maps and every measure, and appends one
results line per (stage, variant, image) to the journal `results.jsonl` in
`out` (`sr_jax.runner.journal`: one `write` + `fsync` per line, so a line is
there whole or not at all). A re-run reads the journal and computes only the
lines that are missing; a partial last line left by a kill is dropped first.
At the end the records are aggregated into `results.json`, `results.md` and
the figures (`report`).

Stages: "main" runs every measure on the model's set; "single" runs the
localisation measures on the synthetic set's "single" variant with the model
trained on it (`weights/demo_vgg_single.safetensors`), for the An8Flower
comparison of one and two discriminative parts.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, TextIO, Union

import numpy as np

from sr_jax import attribution, files
from sr_jax.data import synthetic
from sr_jax.evaluation import data as data_lib
from sr_jax.evaluation import measures, report, variants
from sr_jax.evaluation.explain import Explainer
from sr_jax.evaluation.protocol import (Protocol, Shared, batch_records,
                                        random_order)
from sr_jax.models.loading import load_model, resolve_weights
from sr_jax.models.preprocess import normalize
from sr_jax.models.registry import get_arch
from sr_jax.runner import journal
from sr_jax.runner.progress import progress

PathLike = Union[str, os.PathLike]
SINGLE_WEIGHTS = "demo_vgg_single"  # weights/<this>.safetensors
# Deep SHAP's background on the synthetic set: this many training images (its
# cost grows with the count; Lundberg & Lee's DeepExplainer takes a sample).
BACKGROUND_IMAGES = 16


@dataclasses.dataclass
class Stage:
  """One model on one set of images, with the measures it runs."""

  name: str
  explainer: Explainer
  data: data_lib.EvalSet
  full: bool
  model_info: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Summary:
  """What a run did."""

  computed: int  # results lines written by this run
  reused: int  # lines an earlier run had written
  skipped: tuple[str, ...]  # variants not run, with the reason
  seconds: float
  results: Optional[Path]  # results.json

  def __str__(self) -> str:
    return (f"evaluated {self.computed} (variant, image) pairs, reused "
            f"{self.reused}, in {self.seconds:.0f} s; "
            f"{len(self.skipped)} skipped; wrote {self.results}")


def _drop_partial_line(path: Path) -> None:
  """Cuts a last line without its newline (a writer killed mid-write)."""
  if not path.exists():
    return
  data = path.read_bytes()
  end = data.rfind(b"\n") + 1
  if end != len(data):
    files.atomic_write(path, data[:end])


def _layers(explainer: Explainer, x: np.ndarray) -> list[str]:
  """The model's conv and dense layers, top (output) first."""
  taps = attribution.layers(explainer.model, explainer.variables, x[:1])
  return [t.name for t in reversed(list(taps.values()))
          if t.kind in ("conv", "dense")]


def _load(model: str, weights: Optional[str]) -> tuple[Any, Any, dict]:
  path = resolve_weights(model, weights)
  m, v = load_model(model, path)
  return m, v, {"arch": model, "weights": path or "random (PRNGKey(0))"}


def make_stages(*, model: str, weights: Optional[str], images: Optional[str],
                masks: Optional[str], n: int, seed: int, single_n: int,
                protocol: Protocol, log: Callable[[str], None]
                ) -> list[Stage]:
  """The stages of a run (see the module docstring)."""
  if (images is None) != (masks is None):
    raise ValueError(f"Give both `images` (={images!r}) and `masks` "
                     f"(={masks!r}), or neither (the synthetic set).")
  m, v, info = _load(model, weights)
  if images is not None:
    data = data_lib.folder_set(images, masks, arch=model, n=n)
  else:
    data = data_lib.synthetic_set(n, seed=seed,
                                  size=get_arch(model).input_size)
  ex = Explainer(m, v, model, seed=protocol.seed)
  stages = [Stage("main", ex, data, True, info)]
  if images is None and single_n > 0:
    path = resolve_weights(SINGLE_WEIGHTS, None)
    if model != "demo_vgg" or path is None:
      log(f"skipped stage 'single': no weights/{SINGLE_WEIGHTS}.safetensors "
          f"for `model` (={model!r})")
    else:
      sm, sv = load_model(model, path)
      sdata = data_lib.synthetic_set(min(single_n, n), seed=seed,
                                     variant="single",
                                     size=data.images.shape[1])
      stages.append(Stage("single", Explainer(sm, sv, model,
                                              seed=protocol.seed),
                          sdata, False, {"arch": model, "weights": path}))
  return stages


def deepshap_background(arch: str, count: int = BACKGROUND_IMAGES
                        ) -> np.ndarray:
  """Deep SHAP's background for the synthetic set: the first `count`
  training images (`TRAIN_SEED`, never the held-out seed), normalized."""
  images, _, _ = synthetic.make_batch(synthetic.TRAIN_SEED, 0, count,
                                      size=get_arch(arch).input_size)
  return np.asarray(normalize(images, arch))


def _key(stage: str, variant: str, image: str) -> str:
  return f"{stage}/{variant}/{image}"


def _shared(stage: Stage, rows: np.ndarray, protocol: Protocol) -> Shared:
  """What every variant of a batch shares; the image saliency and the
  random-order curves only for a stage that runs every measure."""
  d, ex = stage.data, stage.explainer
  x = np.asarray(normalize(d.images[rows], ex.arch))
  probs = ex.probabilities(x)
  targets = (probs.argmax(-1) if d.labels is None
             else np.asarray(d.labels[rows]))
  shared = Shared(d.images[rows], d.masks[rows], x, targets, probs, rows)
  if stage.full:
    shared.random = random_order(ex, shared, protocol)
    shared.saliency = ex.saliency(shared.images)
  return shared


def _record(stage: Stage, variant: str, shared: Shared, k: int,
            measures_rec: dict) -> dict:
  d, i = stage.data, int(shared.indices[k])
  t = int(shared.targets[k])
  return {"file": _key(stage.name, variant, d.ids[i]), "status": "ok",
          "stage": stage.name, "variant": variant, "image": d.ids[i],
          "index": i, "label": None if d.labels is None else int(d.labels[i]),
          "target_class": t,
          "predicted": int(np.argmax(shared.probabilities[k])),
          "probability": float(shared.probabilities[k, t]), **measures_rec}


def _run_stage(stage: Stage, todo: Sequence[variants.Variant], out: Path,
               records: dict[str, dict], writer: journal.Writer, bar: Any,
               protocol: Protocol, failed: dict[str, str],
               log: Callable[[str], None]) -> int:
  """Computes the missing lines of one stage; returns how many."""
  d, computed = stage.data, 0
  grabcut = measures.grabcut_available()
  layers: list[str] = []
  for start in range(0, len(d), protocol.batch_size):
    rows = np.arange(start, min(start + protocol.batch_size, len(d)))
    missing = {v.name: [r for r in rows
                        if _key(stage.name, v.name, d.ids[r]) not in records]
               for v in todo if v.name not in failed}
    missing = {k: np.array(r) for k, r in missing.items() if r}
    if not missing:
      continue
    need = np.unique(np.concatenate(list(missing.values())))
    shared = _shared(stage, need, protocol)
    if stage.full and not layers:
      layers = _layers(stage.explainer, shared.x)
    for v in todo:
      if v.name not in missing:
        continue
      sub = np.searchsorted(need, missing[v.name])
      part = shared if len(sub) == len(need) else _subset(shared, sub)
      bar.set_postfix_str(f"{stage.name} {v.name}")
      try:
        recs, plane = batch_records(stage.explainer, v, part,
                                    protocol=protocol, full=stage.full,
                                    grabcut=grabcut, layers=layers)
      except Exception as e:  # pylint: disable=broad-except
        failed[v.name] = f"{type(e).__name__}: {e}"
        log(f"method {v.name!r} failed on {stage.name} images "
            f"{int(part.indices[0])}..{int(part.indices[-1])} and is "
            f"skipped: {failed[v.name]}")
        continue
      if stage.name == "main":
        report.save_gallery_planes(out, v.name, part.indices, plane)
      for k, rec in enumerate(recs):
        line = _record(stage, v.name, part, k, rec)
        writer.commit(line)
        records[line["file"]] = line
        computed += 1
        bar.update(1)
  return computed


def _subset(shared: Shared, sub: np.ndarray) -> Shared:
  pick = (lambda a: None if a is None else a[sub])
  return Shared(shared.images[sub], shared.masks[sub], shared.x[sub],
                shared.targets[sub], shared.probabilities[sub],
                shared.indices[sub], pick(shared.saliency),
                None if shared.random is None else
                [shared.random[i] for i in sub])


def evaluate(
    out: PathLike,
    *,
    model: str = "demo_vgg",
    weights: Optional[str] = None,
    images: Optional[str] = None,
    masks: Optional[str] = None,
    n: int = 500,
    methods: Union[str, Sequence[str]] = "all",
    seed: int = synthetic.EVALUATION_SEED,
    single_n: int = 100,
    protocol: Protocol = Protocol(),
    figures: bool = True,
    stream: Optional[TextIO] = None,
) -> Summary:
  """Runs the evaluation into `out` (or finishes an interrupted one).

  Args:
    out: the output folder (created); it holds the journal, results.json,
      results.md and the figures.
    model: the architecture.
    weights: its weight file; None: the bundled one, else random weights.
    images, masks: folders of the user's images and same-named mask PNGs;
      None: the synthetic flowers.
    n: how many images (the first n).
    methods: "all" or a comma-separated list of variants (see
      `sr_jax.evaluation.variants`).
    seed: the synthetic set's seed; by default the held-out
      `EVALUATION_SEED`.
    single_n: images of the "single" stage (0: none).
    protocol: the measures' settings.
    figures: also draw evaluation.png and evaluation_gallery.png.
    stream: where the progress bar and log lines go (None: stderr).

  Returns:
    A `Summary`.

  Raises:
    ValueError: for bad arguments, or an `out` whose journal was written
      under other settings.
    RuntimeError: when another run holds `out`.
  """
  stream = sys.stderr if stream is None else stream
  notes: list[str] = []

  def log(line: str) -> None:
    notes.append(line)
    print(line, file=stream, flush=True)

  if not isinstance(n, (int, np.integer)) or n < 1:
    raise ValueError(f"`n` (={n!r}) must be an integer >= 1.")
  out = Path(out)
  out.mkdir(parents=True, exist_ok=True)
  t0 = time.perf_counter()
  background = deepshap_background(model) if images is None else None
  todo = variants.resolve(methods, seed=protocol.seed, log=log,
                          background=background)
  if images is not None and any(v.method == "deepshap" for v in todo):
    log("Deep SHAP runs with one black background image (no training set "
        "is known for a folder of images); it then equals DeepLIFT")
  stages = make_stages(model=model, weights=weights, images=images,
                       masks=masks, n=n, seed=seed, single_n=single_n,
                       protocol=protocol, log=log)
  settings = report.settings(stages, protocol, todo)
  with journal.exclusive(out):
    report.check_settings(out, settings)
    _drop_partial_line(out / journal.RESULTS)
    records = dict(journal.Reader(out).poll())
    total = sum(len(s.data) * len(todo) for s in stages)
    keys = {_key(s.name, v.name, i) for s in stages for v in todo
            for i in s.data.ids}
    reused = sum(1 for k in records if k in keys)
    failed: dict[str, str] = {}
    computed = 0
    with journal.Writer(out, process=0, count=1) as writer, progress(
        total=total, desc="evaluate", unit="maps", stream=stream) as bar:
      bar.update(reused)
      for stage in stages:
        computed += _run_stage(stage, todo, out, records, writer, bar,
                               protocol, failed, log)
    path = report.write(out, stages, todo, list(records.values()), protocol,
                        settings=settings, notes=notes,
                        seconds=time.perf_counter() - t0, figures=figures)
  return Summary(computed, reused, tuple(notes), time.perf_counter() - t0,
                 path)
