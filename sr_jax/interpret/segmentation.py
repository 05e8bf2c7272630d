"""Weakly supervised segmentation from a saliency map, with GrabCut.

Simonyan, Vedaldi & Zisserman, "Deep Inside Convolutional Networks" (2014),
§3.1: the saliency map seeds GrabCut's colour models. Pixels whose saliency
is at or above the `fg_quantile` quantile of the map are foreground seeds,
pixels at or below the `bg_quantile` quantile background seeds, and GrabCut
(Rother et al. 2004; OpenCV's `cv2.grabCut`, started with
`GC_INIT_WITH_MASK`) labels the rest. The seeds are hard labels
(`GC_FGD`, `GC_BGD`), the rest starts as probable background (`GC_PR_BGD`),
so the foreground colour model is estimated from the foreground seeds alone.

OpenCV comes from the optional extra: `pip install "sr_jax[segment]"`
(`opencv-python-headless`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import numpy as np
from skimage import measure

INSTALL_HINT = 'pip install "sr_jax[segment]"'
# GrabCut fits a 5-component Gaussian mixture to each seed set (OpenCV's
# `GMM::componentsCount`); k-means needs at least that many samples.
MIN_SEEDS = 5


class Segmentation(NamedTuple):
  """What `segment` returns.

  Attributes:
    mask: bool HxW, True on the foreground.
    box: (top, left, bottom, right) of the mask's largest 8-connected
      component; bottom and right are exclusive (`mask[top:bottom,
      left:right]` holds the component).
    seeds: int8 HxW: 1 foreground seed, -1 background seed, 0 left to
      GrabCut.
  """

  mask: np.ndarray
  box: tuple[int, int, int, int]
  seeds: np.ndarray


def _cv2() -> Any:
  try:
    import cv2  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ImportError(
        f"`segment` needs OpenCV's GrabCut; install it with {INSTALL_HINT} "
        f"(the opencv-python-headless wheel). ({e})") from e
  return cv2


def _as_image(image: Any) -> np.ndarray:
  image = np.asarray(image)
  if image.dtype != np.uint8:
    raise ValueError(
        f"`image` (dtype={image.dtype}) must be uint8 RGB with values 0..255.")
  if image.ndim != 3 or image.shape[-1] != 3 or min(image.shape[:2]) < 1:
    raise ValueError(f"`image` (shape={image.shape}) must be HxWx3.")
  return np.ascontiguousarray(image)


def saliency_plane(saliency_map: jax.typing.ArrayLike,
                   size: tuple[int, int]) -> np.ndarray:
  """The HxW map `segment` thresholds.

  An HxW map is taken as it is (higher means more salient). An HxWxC map,
  such as a gradient shaped like the input, becomes max over channels of
  |value|, the paper's class saliency map.
  """
  m = np.asarray(saliency_map)
  if not (np.issubdtype(m.dtype, np.floating)
          or np.issubdtype(m.dtype, np.integer)) or m.dtype == np.bool_:
    raise ValueError(
        f"`saliency_map` (dtype={m.dtype}) must hold real numbers.")
  if m.ndim == 3:
    m = np.abs(m).max(axis=-1)
  if m.ndim != 2:
    raise ValueError(
        f"`saliency_map` (shape={m.shape}) must be HxW or HxWxC; for a batch "
        "of one, pass `saliency_map[0]`.")
  if m.shape != tuple(size):
    raise ValueError(
        f"`saliency_map` (shape={m.shape}) must match the image's size "
        f"{tuple(size)}.")
  m = m.astype(np.float64)
  if not np.all(np.isfinite(m)):
    raise ValueError("`saliency_map` holds NaN or infinite values.")
  return m


def _check_quantiles(fg_quantile: Any, bg_quantile: Any) -> None:
  for name, q in (("fg_quantile", fg_quantile), ("bg_quantile", bg_quantile)):
    if not isinstance(q, (int, float, np.floating)) or isinstance(q, bool):
      raise ValueError(f"`{name}` (={q!r}) must be a number in (0, 1).")
  if not 0 < bg_quantile < fg_quantile < 1:
    raise ValueError(
        f"`bg_quantile` (={bg_quantile!r}) and `fg_quantile` "
        f"(={fg_quantile!r}) must satisfy 0 < bg_quantile < fg_quantile < 1.")


def seeds(saliency: np.ndarray, fg_quantile: float, bg_quantile: float
          ) -> np.ndarray:
  """The int8 seed map (1 foreground, -1 background, 0 unknown) of an HxW map.

  Raises:
    ValueError: when the map is constant from one quantile to the other (the
      seed sets would overlap), or a seed set has fewer than `MIN_SEEDS`
      pixels.
  """
  fg_level, bg_level = np.quantile(saliency, [fg_quantile, bg_quantile])
  where = (f"`fg_quantile` (={fg_quantile}, saliency >= {fg_level:.4g}) and "
           f"`bg_quantile` (={bg_quantile}, saliency <= {bg_level:.4g})")
  if fg_level <= bg_level:
    raise ValueError(
        f"The saliency map is constant between {where}, so the foreground "
        "and background seeds would be the same pixels; pass a map that "
        "varies, or other quantiles.")
  fg, bg = saliency >= fg_level, saliency <= bg_level
  for name, part in (("foreground", fg), ("background", bg)):
    if part.sum() < MIN_SEEDS:
      raise ValueError(
          f"{where} leave {int(part.sum())} {name} seed pixels; GrabCut needs "
          f"at least {MIN_SEEDS} (a {name} colour model has {MIN_SEEDS} "
          "Gaussians). Use a larger image or other quantiles.")
  return fg.astype(np.int8) - bg.astype(np.int8)


def largest_component_box(mask: np.ndarray) -> tuple[int, int, int, int]:
  """(top, left, bottom, right) of the largest 8-connected True region.

  Bottom and right are exclusive. A mask with no True pixel gives
  (0, 0, 0, 0).
  """
  labels = measure.label(mask, connectivity=2)
  if labels.max() == 0:
    return (0, 0, 0, 0)
  sizes = np.bincount(labels.ravel())
  sizes[0] = 0
  rows, cols = np.nonzero(labels == np.argmax(sizes))
  return (int(rows.min()), int(cols.min()), int(rows.max()) + 1,
          int(cols.max()) + 1)


def segment(
    image: np.ndarray,
    saliency_map: jax.typing.ArrayLike,
    *,
    fg_quantile: float = 0.95,
    bg_quantile: float = 0.30,
    iterations: int = 5,
) -> Segmentation:
  """Segments the object a saliency map points at, with GrabCut.

  Args:
    image: uint8 HxWx3 RGB image (GrabCut's colour models do not depend on
      the channel order).
    saliency_map: HxW (used as it is) or HxWxC (max |.| over channels) map of
      the same height and width; any method's map (gradient, LRP, SR).
    fg_quantile: pixels with saliency at or above this quantile of the map
      seed the foreground (the paper's 95%).
    bg_quantile: pixels at or below this quantile seed the background (the
      paper's 30%); 0 < bg_quantile < fg_quantile < 1.
    iterations: GrabCut iterations, >= 1.

  Returns:
    A `Segmentation` (mask, box, seeds).

  Raises:
    ImportError: when OpenCV is not installed (the message says how to
      install it).
    ValueError: for a bad image, map, quantiles or iterations, or seeds that
      leave too few foreground or background pixels.

  Examples:
    >>> image = np.zeros((32, 32, 3), np.uint8); image[8:24, 8:24] = 200
    >>> saliency = -np.hypot(*(np.mgrid[:32, :32] - 15.5))  # peak at the centre
    >>> segment(image, saliency).box
    (8, 8, 24, 24)
  """
  image = _as_image(image)
  saliency = saliency_plane(saliency_map, image.shape[:2])
  _check_quantiles(fg_quantile, bg_quantile)
  if (not isinstance(iterations, (int, np.integer)) or isinstance(
      iterations, bool) or iterations < 1):
    raise ValueError(f"`iterations` (={iterations!r}) must be an integer >= 1.")
  seed = seeds(saliency, fg_quantile, bg_quantile)
  cv2 = _cv2()
  labels = np.full(seed.shape, cv2.GC_PR_BGD, np.uint8)
  labels[seed == 1] = cv2.GC_FGD
  labels[seed == -1] = cv2.GC_BGD
  cv2.setRNGSeed(0)  # GrabCut's k-means initialisation, for repeatability.
  bgd_model = np.zeros((1, 65), np.float64)
  fgd_model = np.zeros((1, 65), np.float64)
  cv2.grabCut(image, labels, None, bgd_model, fgd_model, int(iterations),
              cv2.GC_INIT_WITH_MASK)
  mask = (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
  return Segmentation(mask, largest_component_box(mask), seed)
