"""The images an evaluation runs on, with their ground-truth masks.

Two sources:

* `synthetic_set`: held-out flowers of `sr_jax.data.synthetic`, from
  `EVALUATION_SEED`, a seed that no training run, test accuracy or setting
  was ever looked at on. The mask marks the parts that decide the class (the
  petals and the centre for the "double" variant, the centre for "single").
* `folder_set`: a user's images with same-named mask PNGs (non-zero =
  object), for a real model: every image is resized and cropped as the
  architecture wants (`sr_jax.sr.prepare`) and its mask with the same
  geometry (nearest neighbour).

Examples:
  >>> data = synthetic_set(4, seed=7)
  >>> data.images.shape, data.masks.shape, data.ids[0]
  ((4, 64, 64, 3), (4, 64, 64), 'synthetic-7-0')
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
from PIL import Image

from sr_jax import files
from sr_jax import sr as sr_lib
from sr_jax.data import synthetic
from sr_jax.models.registry import get_arch

PathLike = Union[str, os.PathLike]


@dataclasses.dataclass(frozen=True)
class EvalSet:
  """Images as the model sees them, with masks and (maybe) labels.

  Attributes:
    images: uint8 (N, H, W, 3), the crops the model sees.
    masks: bool (N, H, W), the ground truth of each image, non-empty.
    labels: int32 (N,) true classes, or None (then each image's top class is
      explained).
    ids: one name per image (the journal's key).
    info: how the set was made (source, seed, variant, folders), for
      results.json.
  """

  images: np.ndarray
  masks: np.ndarray
  labels: Optional[np.ndarray]
  ids: tuple[str, ...]
  info: dict[str, Any]

  def __len__(self) -> int:
    return len(self.ids)


def synthetic_set(n: int, *, seed: int = synthetic.EVALUATION_SEED,
                  variant: str = "double",
                  size: int = synthetic.DEFAULT_SIZE) -> EvalSet:
  """Samples 0 .. n-1 of the synthetic flowers of `seed`.

  Args:
    n: number of images (>= 1).
    seed: dataset seed; the default is the held-out `EVALUATION_SEED`.
    variant: "double" or "single" (`sr_jax.data.synthetic.VARIANTS`).
    size: image side in pixels.

  Returns:
    An `EvalSet` with the true labels.

  Raises:
    ValueError: for a bad `n`, `seed`, `variant` or `size`.
  """
  if not isinstance(n, (int, np.integer)) or n < 1:
    raise ValueError(f"`n` (={n!r}) must be an integer >= 1.")
  images, labels, masks = synthetic.make_batch(seed, 0, int(n), size=size,
                                               variant=variant)
  ids = tuple(f"synthetic-{seed}-{i}" for i in range(n))
  info = {"source": "synthetic", "seed": int(seed), "variant": variant,
          "n": int(n), "size": int(size),
          "held_out": seed == synthetic.EVALUATION_SEED,
          "mask": "the parts that decide the class: "
                  + " and ".join(synthetic.VARIANTS[variant])}
  return EvalSet(images, masks, labels, ids, info)


def _crop_mask(mask: np.ndarray, arch: str) -> np.ndarray:
  """The mask with the geometry of `sr.prepare` (nearest neighbour)."""
  spec = get_arch(arch).preprocessing
  if spec.resize is None:
    return mask
  h, w = mask.shape
  short, long = (w, h) if w <= h else (h, w)
  im = Image.fromarray(mask.astype(np.uint8) * 255)
  if short != spec.resize:
    new_long = int(spec.resize * long / short)
    size = (spec.resize, new_long) if w <= h else (new_long, spec.resize)
    im = im.resize(size, Image.NEAREST)
  out = np.asarray(im) > 127
  crop = spec.crop or spec.resize
  top = int(round((out.shape[0] - crop) / 2.0))
  left = int(round((out.shape[1] - crop) / 2.0))
  return out[top:top + crop, left:left + crop]


def _load_mask(path: Path) -> np.ndarray:
  try:
    with Image.open(path) as im:
      m = np.asarray(im.convert("L"))
  except (OSError, ValueError) as e:
    raise ValueError(f"mask file {str(path)!r} cannot be read: {e}") from e
  return m > 0


def folder_set(images: PathLike, masks: PathLike, *, arch: str,
               n: Optional[int] = None) -> EvalSet:
  """Images of a folder with the same-named masks of another.

  Image `photos/cat.jpg` takes mask `masks/cat.png` (any image suffix of
  `sr_jax.files.IMAGE_SUFFIXES`, non-zero pixels are the object). Both are
  brought to the crop that `arch` sees: the image by `sr_jax.sr.prepare`,
  the mask with the same resize and centre crop, nearest neighbour.

  Args:
    images: a folder of images (or a glob pattern).
    masks: the folder of their masks.
    arch: the architecture whose preprocessing applies.
    n: use only the first `n` images (sorted by name); None: all.

  Returns:
    An `EvalSet` without labels: each image's top class is explained.

  Raises:
    ValueError: when there is no image, an image has no mask (the message
      names it), a mask's size differs from its image's, or a mask is empty
      after cropping.
  """
  paths = files.list_images(images)
  if not paths:
    raise ValueError(f"`images` (={os.fspath(images)!r}) holds no image.")
  if n is not None:
    paths = paths[:n]
  mask_dir = Path(masks)
  if not mask_dir.is_dir():
    raise ValueError(f"`masks` (={os.fspath(masks)!r}) is not a folder.")
  by_stem = {p.stem: p for p in files.list_images(mask_dir)}
  crops, truth, ids = [], [], []
  for p in paths:
    if p.stem not in by_stem:
      raise ValueError(f"image {p.name!r} has no mask named {p.stem}.png in "
                       f"`masks` (={os.fspath(masks)!r}).")
    image, mask = files.load_image(p), _load_mask(by_stem[p.stem])
    if mask.shape != image.shape[:2]:
      raise ValueError(
          f"mask {by_stem[p.stem].name!r} (size={mask.shape}) must have the "
          f"size of image {p.name!r} (={image.shape[:2]}).")
    crop, cropped = sr_lib.prepare(image, arch=arch), _crop_mask(mask, arch)
    if not cropped.any():
      raise ValueError(f"mask {by_stem[p.stem].name!r} is empty in the crop "
                       f"that `arch` (={arch!r}) sees.")
    crops.append(crop)
    truth.append(cropped)
    ids.append(p.stem)
  shapes = sorted({c.shape for c in crops})
  if len(shapes) != 1:
    raise ValueError(f"`images` give crops of different sizes ({shapes}); "
                     "use images of one size or a resizing architecture.")
  info = {"source": "folder", "images": os.fspath(images),
          "masks": os.fspath(masks), "n": len(ids), "held_out": None,
          "mask": "the user's masks (non-zero pixels)"}
  return EvalSet(np.stack(crops), np.stack(truth), None, tuple(ids), info)
