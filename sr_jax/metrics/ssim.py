"""The SR paper's SSIM ratio (Li, Tian, Mueller, Chen 2017, Table 1).

References:
  Li, Tian, Mueller, Chen (2017), "Beyond saliency: understanding
  convolutional neural networks from saliency prediction on layer-wise
  relevance propagation".
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np
from skimage.metrics import structural_similarity

from sr_jax.maps import normalize
from sr_jax.metrics._common import Score, as_map, check_plane, per_image

__all__ = ["SSIMRatio", "ssim_ratio"]

SSIM_WINDOW = 7  # scikit-image's default window, as the SR paper's code used.


class SSIMRatio(NamedTuple):
  """SSIM of the LRP map and of the SR map against the image's saliency."""
  ssim_lrp: Score  # SSIM_1 = SSIM(LRP map, image saliency)
  ssim_sr: Score  # SSIM_2 = SSIM(SR map, image saliency)
  ratio: Score  # SSIM_2 / SSIM_1


def map_ssim(a: np.ndarray, b: np.ndarray) -> float:
  """SSIM of two HxW maps after min-max scaling each (data_range=1, 7x7)."""
  return float(structural_similarity(
      normalize(a), normalize(b), data_range=1.0, win_size=SSIM_WINDOW))


def check_ssim_size(shape: tuple[int, ...], name: str) -> None:
  """Raises unless both sides of `shape` fit SSIM's window."""
  if min(shape) < SSIM_WINDOW:
    raise ValueError(
        f"`{name}` (shape={shape}) is too small for SSIM; each side must be at "
        f"least {SSIM_WINDOW} pixels.")


def ssim_ratio(
    relevance_map: jax.typing.ArrayLike,
    sr_map: jax.typing.ArrayLike,
    image_saliency: jax.typing.ArrayLike,
) -> SSIMRatio:
  """The SR paper's Table 1 metric: SSIM_2 / SSIM_1 against image saliency.

  All three maps are min-max normalized to [0, 1] (a constant map becomes all
  zeros) and compared with `skimage.metrics.structural_similarity`
  (data_range=1, its default 7x7 uniform window). The LRP map is
  `lrp_map(relevance_map)`. SSIM of constant maps is well defined (SSIM's
  stabilising constants keep the denominator positive), so constant maps give
  finite numbers, not NaN.

  Args:
    relevance_map: signed relevance HxWxC (or an HxW LRP heatmap); a batch has
      a leading axis N.
    sr_map: the SR map, HxW, or NxHxW for a batch.
    image_saliency: the image's own saliency map, same shape as `sr_map`.

  Returns:
    `SSIMRatio(ssim_lrp, ssim_sr, ratio)`: floats, or (N,) arrays for a batch.
    `ratio` = ssim_sr / ssim_lrp; where ssim_lrp is exactly 0 it is +inf or
    -inf by the sign of ssim_sr (NaN only if both are 0). A negative ssim_lrp
    flips the ratio's sign; look at the two SSIMs too.

  Raises:
    ValueError: if a map is not finite, the shapes disagree, or a side is
      shorter than SSIM's 7-pixel window.

  Examples:
    >>> s = ssim_ratio(R, result.sr, result.image_saliency)  # doctest: +SKIP
    >>> s.ratio > 1  # SR closer to human saliency than LRP  # doctest: +SKIP
  """
  sr = as_map(sr_map, "sr_map")
  check_plane(sr, "sr_map")
  sal = as_map(image_saliency, "image_saliency")
  if sal.shape != sr.shape:
    raise ValueError(
        f"`image_saliency` (shape={sal.shape}) must have the shape of `sr_map` "
        f"(={sr.shape}).")
  rel = as_map(relevance_map, "relevance_map")
  if rel.shape[:sr.ndim] != sr.shape or rel.ndim not in (sr.ndim, sr.ndim + 1):
    raise ValueError(
        f"`relevance_map` (shape={rel.shape}) must be {sr.shape} or "
        f"{sr.shape}xC to match `sr_map` (shape={sr.shape}).")
  check_ssim_size(sr.shape[-2:], "sr_map")
  if rel.ndim > sr.ndim:
    rel = np.abs(rel).sum(axis=-1)
  ssim_lrp = per_image(map_ssim, rel, sal)
  ssim_sr = per_image(map_ssim, sr, sal)
  with np.errstate(divide="ignore", invalid="ignore"):
    ratio = np.divide(ssim_sr, ssim_lrp)
  if sr.ndim == 2:
    ratio = float(ratio)
  return SSIMRatio(ssim_lrp, ssim_sr, ratio)
