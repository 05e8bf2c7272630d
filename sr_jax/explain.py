"""Explaining one image file (or the demo sample): the library side of
`python -m sr_jax.scripts.explain`.

`explain` chooses the input (a file, or sample `sample_index` of
`sr_jax.data.synthetic` for `image="sample"`), the model (the demo model for
the sample, VGG-16 otherwise, unless one is named) and the weights (a given
file, else the ones shipped for the model, else random ones), checks them,
computes the SR map and writes `<out>/<name>.png` (the panel) and
`<out>/<name>.npz` (every map). `report` gives the lines the script prints.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from sr_jax import files, runner, sr
from sr_jax.classes import label
from sr_jax.data import synthetic

PathLike = Union[str, os.PathLike]
SAMPLE = "sample"  # `image=` value for the demo image
SAMPLE_MODEL = "demo_vgg"  # the model trained on the demo images
DEFAULT_MODEL = "vgg16"


@dataclasses.dataclass(frozen=True)
class Explained:
  """What `explain` computed and wrote.

  Attributes:
    result: the `SRResult`.
    class_names: the model's class names (None when it has none).
    model: the architecture used.
    png: the panel written.
    npz: the maps written.
  """

  result: sr.SRResult
  class_names: Optional[tuple[str, ...]]
  model: str
  png: Path
  npz: Path


def load_input(image: PathLike, *, sample_index: int = 0
               ) -> tuple[np.ndarray, str, Optional[int]]:
  """The pixels to explain, the output files' name, and the true class.

  Args:
    image: an image file, or "sample" for the demo image.
    sample_index: which demo image "sample" means.

  Returns:
    `(uint8 HxWx3, name, true class)`: for a file its name and None (the
    truth is unknown); for the sample "sample<index>" and its class.

  Raises:
    ValueError: for a file that is not a readable image, or a bad
      `sample_index`.
  """
  if os.fspath(image) == SAMPLE:
    pixels, truth, _ = synthetic.sample(synthetic.SAMPLE_SEED, sample_index)
    return pixels, f"{SAMPLE}{sample_index}", truth
  return files.load_image(image), Path(image).name, None


def default_model(image: PathLike, model: Optional[str] = None) -> str:
  """`model`, else the demo model for the sample and VGG-16 for a file.

  Examples:
    >>> default_model("sample"), default_model("cat.jpg")
    ('demo_vgg', 'vgg16')
  """
  if model:
    return model
  return SAMPLE_MODEL if os.fspath(image) == SAMPLE else DEFAULT_MODEL


def check_weights(weights: Optional[PathLike]) -> None:
  """Raises a ValueError unless `weights` is None or an existing file."""
  if weights is not None and not Path(weights).is_file():
    raise ValueError(
        f"`weights` (={os.fspath(weights)!r}) is not a file; give a "
        "safetensors weights file for the model, or leave `weights` out for "
        "the model's shipped weights (or random ones).")


def explain(
    image: PathLike,
    out: PathLike,
    *,
    arch: Optional[str] = None,
    weights: Optional[PathLike] = None,
    target: Optional[int] = None,
    sample_index: int = 0,
    model: Optional[str] = None,
    **sr_options: Any,
) -> Explained:
  """The SR map of one image file (or the demo sample), written to `out`.

  Args:
    image: an image file, or "sample" for demo image `sample_index`.
    out: the output folder (created if missing).
    arch: the architecture; None: `default_model(image)`.
    weights: a safetensors weight file; None: the model's shipped weights,
      else random ones (`sr_jax.models.loading.resolve_weights`).
    target: the class to explain; None: the top class.
    sample_index: which demo image "sample" means.
    model: the former name of `arch`, kept as its alias.
    **sr_options: the SR map's options, as in `sr_jax.sr_map` (method,
      method_options, composite, relevance_image, saliency_options).

  Returns:
    The result, the class names and the paths written.

  Raises:
    ValueError: for a missing `weights` file, an unreadable image, an
      unknown model or composite, or weights that do not fit the model.

  Examples:
    >>> done = explain("sample", "out")  # doctest: +SKIP
    >>> print("\\n".join(report(done)))  # doctest: +SKIP
  """
  check_weights(weights)
  pixels, name, truth = load_input(image, sample_index=sample_index)
  model = default_model(image, runner.arch_name(arch, model) if (
      arch or model) else None)
  result, names = runner.explain_one(
      pixels, os.fspath(out), name, arch=model,
      weights=None if weights is None else os.fspath(weights), target=target,
      true_label=truth, **sr_options)
  base = Path(out) / name
  return Explained(result=result, class_names=names, model=model,
                   png=base.with_name(f"{name}.png"),
                   npz=base.with_name(f"{name}.npz"))


def report(done: Explained, *, top: int = 5) -> list[str]:
  """The lines to print: the `top` classes with probabilities, then what
  was explained and written.

  Args:
    done: what `explain` returned.
    top: how many classes to list.

  Returns:
    Lines such as "2 hue+120 1.00", ..., "explained 2 hue+120; wrote
    out/sample0.png and .npz".
  """
  names: Optional[Sequence[str]] = done.class_names
  lines = [f"{text} {prob:.2f}"
           for _, text, prob in sr.top_predictions(done.result.logits, top,
                                                   names)]
  lines.append(f"explained {label(done.result.target, names)}; wrote "
               f"{done.png} and .npz")
  return lines
