"""Relevant features of a demo model on the synthetic flowers, as files: the
library call of `sr_jax.scripts.relevant_features`.

`save_relevant_features(arch, out, mu=...)` fits the selection on the first
`count` images of the training split (`synthetic.TRAIN_SEED`, the images
the demo model was trained on, from index 0 as `sr_jax.train` takes them),
then writes to `out`:

* `relevant_features.safetensors`: the fitted selection (`load` reads it);
* `class_<k>.png`: class k's interpretation, the average visualisation of
  each of its relevant features of positive weight, largest weight first;
* `explanations.png`: held-out demo images (`synthetic.SAMPLE_SEED`), each
  with its explanation and the average visualisations of the features that
  explain it;
* `relevant_features.png`: both in one figure (docs/relevant_features.png);
* `relevant_features.json`: each class's selected features (layer, channel,
  weight), and each explained image's class, prediction and features.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Optional, Sequence, Union

import numpy as np

from sr_jax.core import backward as core
from sr_jax.core.models import as_function
from sr_jax.interpret.feature_explanations import explain
from sr_jax.interpret.features import (DEFAULT_BATCH_SIZE, RelevantFeatures,
                                       features, fit)
from sr_jax.interpret.lasso import check_mu
from sr_jax.interpret.receptive_fields import (DEFAULT_TOP, FeatureView,
                                               average_visualisations)

DEFAULT_COUNT = 400
DEFAULT_EXPLAIN = 4
SHOWN = 6  # features per class in the figures


def _resized(image: np.ndarray, side: int) -> np.ndarray:
  """`image` scaled to `side` x `side` (nearest: patches are small)."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  return np.asarray(Image.fromarray(image).resize((side, side),
                                                  Image.NEAREST))


def _tile(view: FeatureView, side: int) -> tuple[list[str], np.ndarray]:
  return ([view.layer, f"#{view.channel}, w {view.weight:.2f}"],
          _resized(view.image, side))


def _class_rows(views: Sequence[Sequence[FeatureView]], examples, names,
                label, side: int):
  """Per class: an example image, then its first `SHOWN` features."""
  rows = []
  for c, row in enumerate(views):
    head = ([label(c, names), f"{len(row)} positive, e.g."], examples[c])
    rows.append([head] + [_tile(v, side) for v in row[:SHOWN]])
  return rows


def _summary(fitted: RelevantFeatures, views, names, label) -> list[dict]:
  out = []
  for c in range(fitted.num_classes):
    items = []
    for f in fitted.relevant(c):
      layer, channel = fitted.describe(int(f))
      items.append({"index": int(f), "layer": layer, "channel": channel,
                    "weight": float(fitted.weights[c, f])})
    out.append({"class": c, "name": label(c, names), "features": items,
                "shown": [v.index for v in views[c]]})
  return out


def save_relevant_features(
    arch: str, out: Union[str, os.PathLike], *, mu: float,
    count: int = DEFAULT_COUNT, weights: Optional[str] = None,
    layers: Optional[Sequence[str]] = None, top: int = DEFAULT_TOP,
    explain_count: int = DEFAULT_EXPLAIN, backprop: str = "guided_backprop",
    batch_size: int = DEFAULT_BATCH_SIZE, tile_size: int = 96,
    progress: bool = True,
) -> list[pathlib.Path]:
  """Fits relevant features of `arch` on synthetic flowers and writes them.

  Args:
    arch: a model of the synthetic flowers (`demo_vgg`, `demo_vgg_tiny`);
      its bundled weights unless `weights` names a file.
    out: the output folder (created).
    mu: the L1 radius of each class's weights, > 0.
    count: training images to fit on (>= 1).
    weights: a safetensors weight file for `arch`.
    layers: tap names; None: every conv and ReLU output.
    top: images averaged per feature in its visualisation.
    explain_count: held-out images to explain (>= 0).
    backprop: "guided_backprop" or "deconvnet" for the explanations.
    batch_size: images per jitted call of the feature pass.
    tile_size: the side of a figure tile in pixels.
    progress: show progress bars.

  Returns:
    The paths written (see the module docstring).

  Raises:
    ValueError: for an architecture that does not classify the synthetic
      flowers, or bad options.
  """
  from sr_jax import files, viz  # pylint: disable=import-outside-toplevel
  from sr_jax.classes import label  # pylint: disable=import-outside-toplevel
  from sr_jax.data import synthetic  # pylint: disable=import-outside-toplevel
  from sr_jax.models.loading import load_model  # pylint: disable=import-outside-toplevel
  from sr_jax.models.preprocess import normalize  # pylint: disable=import-outside-toplevel
  from sr_jax.models.registry import get_arch  # pylint: disable=import-outside-toplevel
  from sr_jax.runner.options import resolve_weights  # pylint: disable=import-outside-toplevel
  from sr_jax.sr import class_names  # pylint: disable=import-outside-toplevel
  check_mu(mu)
  spec = get_arch(arch)
  if spec.num_classes != synthetic.NUM_CLASSES:
    raise ValueError(
        f"`arch` (={arch!r}) has {spec.num_classes} classes; the synthetic "
        f"flowers have {synthetic.NUM_CLASSES} (use demo_vgg).")
  for name, value, low in (("count", count, 1),
                           ("explain_count", explain_count, 0)):
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
      raise ValueError(f"`{name}` (={value!r}) must be an integer >= {low}.")
  weights = resolve_weights(arch, weights)
  model, variables = load_model(arch, weights)
  names = class_names(arch, weights)
  size = spec.input_size
  images, labels, _ = synthetic.make_batch(synthetic.TRAIN_SEED, 0, count,
                                           size=size)
  x = normalize(images, arch)
  feats, peaks = features(model, variables, x, layers=layers,
                          batch_size=batch_size, progress=progress,
                          peaks=True)
  fitted = fit(model, variables, x, labels, mu=mu, layers=layers,
               precomputed=feats, progress=progress)
  out = pathlib.Path(out)
  out.mkdir(parents=True, exist_ok=True)
  paths = [fitted.save(out / "relevant_features.safetensors")]
  views = average_visualisations(fitted, model, variables, images, feats,
                                 peaks, top=top)
  examples = [images[np.flatnonzero(labels == c)[0]] if np.any(labels == c)
              else None for c in range(fitted.num_classes)]
  class_rows = _class_rows(views, examples, names, label, tile_size)
  for c, row in enumerate(class_rows):
    paths.append(out / f"class_{c}.png")
    files.save_png(paths[-1], viz._grid([row], box=tile_size, title=(  # pylint: disable=protected-access
        f"class {label(c, names)}: relevant features (mu={mu:g})")))
  by_index = {v.index: v for row in views for v in row}
  explained, rows = [], []
  if explain_count:
    shown, truth, _ = synthetic.make_batch(synthetic.SAMPLE_SEED, 0,
                                           explain_count, size=size)
    xs = normalize(shown, arch)
    maps_, chosen, scores = (np.asarray(a) for a in explain(
        model, variables, xs, fitted=fitted, backprop=backprop,
        return_features=True))
    predicted = np.asarray(core.logits(*as_function(model, variables),
                                       xs)).argmax(-1)
    for i in range(explain_count):
      picked = [int(f) for f, s in zip(chosen[i], scores[i]) if s > 0]
      explained.append({"index": i, "label": int(truth[i]),
                        "predicted": int(predicted[i]),
                        "features": [dict(zip(("layer", "channel"),
                                              fitted.describe(f)),
                                          index=f) for f in picked]})
      row = [([f"true {label(truth[i], names)}",
               f"pred. {label(predicted[i], names)}"], shown[i]),
             (["explanation", backprop], viz.heat(maps_[i, ..., 0]))]
      row += [_tile(by_index[f], tile_size) if f in by_index else (
          [f"{fitted.describe(f)[0]} #{fitted.describe(f)[1]}", ""], None)
              for f in picked]
      rows.append(row)
    paths.append(out / "explanations.png")
    files.save_png(paths[-1], viz._grid(rows, box=tile_size, title=(  # pylint: disable=protected-access
        "explanations from relevant features (held-out images)")))
  paths.append(out / "relevant_features.png")
  files.save_png(paths[-1], viz._grid(class_rows + rows, box=tile_size, title=(  # pylint: disable=protected-access
      f"relevant features of {arch} (mu={mu:g}, {count} training images): "
      "average visualisations per class, then explanations")))
  summary = {"arch": arch, "mu": float(mu), "count": count,
             "layers": list(fitted.layers),
             "classes": _summary(fitted, views, names, label),
             "explanations": explained}
  paths.append(out / "relevant_features.json")
  files.atomic_write(paths[-1], (json.dumps(summary, indent=1) + "\n").encode())
  return paths
