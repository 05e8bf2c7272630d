"""Scores for explanation maps: the SR paper's SSIM ratio, localisation against
ground-truth masks, pixel flipping and the randomisation sanity check.

Every function takes NumPy or JAX arrays. Map-vs-mask metrics take one HxW map
with an HxW mask, or a batch (N, H, W) with masks (N, H, W), and then return a
float per image as an (N,) array. Maps must be finite (NaN or inf raise a
ValueError), and a map with channels must be reduced to one plane first (for
LRP, `lrp_map` does the SR paper's reduction).

Ties are scored by their expectation under a uniformly random tie-break, so
that a constant map (no information) scores chance level rather than a hit.

References:
  Li, Tian, Mueller, Chen (2017), "Beyond saliency: understanding convolutional
  neural networks from saliency prediction on layer-wise relevance
  propagation" (the SSIM ratio). Zhang et al. (2016), "Top-down neural
  attention by excitation backprop" (pointing game). Arras, Osman, Samek
  (2022), "CLEVR-XAI" (relevance mass and rank accuracy). Samek et al. (2017),
  "Evaluating the visualization of what a deep neural network has learned"
  (pixel flipping, AOPC). Adebayo et al. (2018), "Sanity checks for saliency
  maps" (randomisation similarity).
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Union

import jax
import numpy as np
from scipy import ndimage, stats
from skimage.metrics import structural_similarity

Score = Union[float, np.ndarray]

_SSIM_WIN = 7  # scikit-image's default window, as the SR paper's code used.


class SSIMRatio(NamedTuple):
  """SSIM of the LRP map and of the SR map against the image's saliency."""
  ssim_lrp: Score  # SSIM_1 = SSIM(LRP map, image saliency)
  ssim_sr: Score  # SSIM_2 = SSIM(SR map, image saliency)
  ratio: Score  # SSIM_2 / SSIM_1


class PixelFlipping(NamedTuple):
  """A perturbation curve: the score after flipping each fraction of pixels."""
  fractions: np.ndarray  # (steps + 1,) share of pixels flipped, 0 .. 1
  curve: np.ndarray  # (steps + 1,) predict_fn's score at each fraction
  aopc: float  # mean over k of curve[0] - curve[k]; higher = better map


class RandomizationSimilarity(NamedTuple):
  """How alike two maps are (Adebayo et al. 2018); high = the method ignored
  what changed between them."""
  spearman: Score  # rank correlation of the pixel values
  ssim: Score  # SSIM of the min-max normalised maps


def as_map(x: jax.typing.ArrayLike, name: str = "map") -> np.ndarray:
  """`x` as a float64 array, or a ValueError naming `name` if it is not
  numeric or holds NaN or inf."""
  a = np.asarray(x)
  if a.dtype == bool or not np.issubdtype(a.dtype, np.number):
    raise ValueError(f"`{name}` (dtype={a.dtype}) must be a numeric array.")
  a = a.astype(np.float64)
  if not np.all(np.isfinite(a)):
    raise ValueError(
        f"`{name}` contains {np.count_nonzero(~np.isfinite(a))} NaN or inf "
        "values; maps must be finite.")
  return a


def _as_mask(x: jax.typing.ArrayLike, shape: tuple[int, ...]) -> np.ndarray:
  m = np.asarray(x)
  if m.shape != shape:
    raise ValueError(
        f"`mask` (shape={m.shape}) must have the shape of `map` (={shape}); "
        "reduce a map's channels first, e.g. `map.sum(-1)`.")
  if m.dtype != bool:
    if not np.isin(m, (0, 1)).all():
      raise ValueError(
          f"`mask` (dtype={m.dtype}) must be boolean or hold only 0 and 1.")
    m = m.astype(bool)
  if not m.reshape(m.shape[0] if m.ndim == 3 else 1, -1).any(axis=1).all():
    raise ValueError("`mask` is empty (no True pixel) for at least one image.")
  return m


def _per_image(fn: Callable[..., float], *arrays: np.ndarray) -> Score:
  """fn on one HxW set of arrays, or stacked over a leading batch axis."""
  if arrays[0].ndim == 2:
    return float(fn(*arrays))
  return np.array([fn(*items) for items in zip(*arrays)], np.float64)


def _check_plane(a: np.ndarray, name: str) -> None:
  if a.ndim not in (2, 3):
    raise ValueError(
        f"`{name}` (shape={a.shape}) must be HxW or a batch NxHxW.")


def _map_and_mask(map: jax.typing.ArrayLike, mask: jax.typing.ArrayLike):  # pylint: disable=redefined-builtin
  m = as_map(map, "map")
  _check_plane(m, "map")
  return m, _as_mask(mask, m.shape)


def normalize(map: jax.typing.ArrayLike) -> np.ndarray:  # pylint: disable=redefined-builtin
  """Min-max scales an HxW map to [0, 1]; a constant map becomes all zeros.

  Args:
    map: HxW array (finite).

  Returns:
    float64 HxW array in [0, 1].
  """
  m = as_map(map, "map")
  low, high = m.min(), m.max()
  if high == low:
    return np.zeros_like(m)
  return (m - low) / (high - low)


def lrp_map(relevance: jax.typing.ArrayLike) -> np.ndarray:
  """The LRP heatmap the SSIM ratio uses: channel-summed |R|, min-max to [0, 1].

  Args:
    relevance: signed relevance, HxWxC (channels are reduced by summing their
      absolute values) or HxW (taken as it is, then normalised).

  Returns:
    float64 HxW array in [0, 1] (all zeros for a constant map).
  """
  r = as_map(relevance, "relevance")
  if r.ndim == 3:
    r = np.abs(r).sum(axis=-1)
  elif r.ndim != 2:
    raise ValueError(f"`relevance` (shape={r.shape}) must be HxW or HxWxC.")
  return normalize(r)


def _ssim(a: np.ndarray, b: np.ndarray) -> float:
  return float(structural_similarity(
      normalize(a), normalize(b), data_range=1.0, win_size=_SSIM_WIN))


def _check_ssim_size(shape: tuple[int, ...], name: str) -> None:
  if min(shape) < _SSIM_WIN:
    raise ValueError(
        f"`{name}` (shape={shape}) is too small for SSIM; each side must be at "
        f"least {_SSIM_WIN} pixels.")


def ssim_ratio(
    relevance_map: jax.typing.ArrayLike,
    sr_map: jax.typing.ArrayLike,
    image_saliency: jax.typing.ArrayLike,
) -> SSIMRatio:
  """The SR paper's Table 1 metric: SSIM_2 / SSIM_1 against image saliency.

  All three maps are min-max normalised to [0, 1] (a constant map becomes all
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

  Examples:
    >>> s = ssim_ratio(R, result.sr, result.image_saliency)  # doctest: +SKIP
    >>> s.ratio > 1  # SR closer to human saliency than LRP  # doctest: +SKIP
  """
  sr = as_map(sr_map, "sr_map")
  _check_plane(sr, "sr_map")
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
  _check_ssim_size(sr.shape[-2:], "sr_map")
  if rel.ndim > sr.ndim:
    rel = np.abs(rel).sum(axis=-1)
  ssim_lrp = _per_image(_ssim, rel, sal)
  ssim_sr = _per_image(_ssim, sr, sal)
  with np.errstate(divide="ignore", invalid="ignore"):
    ratio = np.divide(ssim_sr, ssim_lrp)
  if sr.ndim == 2:
    ratio = float(ratio)
  return SSIMRatio(ssim_lrp, ssim_sr, ratio)


def _pointing(m: np.ndarray, region: np.ndarray) -> float:
  top = m == m.max()
  return np.count_nonzero(top & region) / np.count_nonzero(top)


def pointing_game(
    map: jax.typing.ArrayLike,  # pylint: disable=redefined-builtin
    mask: jax.typing.ArrayLike,
    *,
    tolerance: float = 0,
) -> Score:
  """Whether the map's maximum falls inside the mask (Zhang et al. 2016).

  Ties: when several pixels share the maximum, the score is the share of them
  that hit, i.e. the expected hit under a random choice among them. A
  constant map thus scores |mask| / (H*W), chance level.

  Args:
    map: HxW (or NxHxW) scores, higher = more relevant.
    mask: boolean (or 0/1) ground truth of the same shape, non-empty.
    tolerance: a maximum within this Euclidean distance (pixels) of the mask
      counts as a hit; Zhang et al. used 15 at 224 px.

  Returns:
    1.0 for a hit and 0.0 for a miss (fractions for ties); an (N,) array for
    a batch.

  Examples:
    >>> pointing_game(np.eye(3), np.eye(3, dtype=bool))  # 3 tied maxima, all in
    1.0
  """
  m, mask = _map_and_mask(map, mask)
  if not (np.isscalar(tolerance) and tolerance >= 0):
    raise ValueError(f"`tolerance` (={tolerance!r}) must be a number >= 0.")
  if tolerance > 0:
    if mask.ndim == 2:
      mask = ndimage.distance_transform_edt(~mask) <= tolerance
    else:
      mask = np.stack([ndimage.distance_transform_edt(~k) <= tolerance
                       for k in mask])
  return _per_image(_pointing, m, mask)


def _mass(m: np.ndarray, mask: np.ndarray) -> float:
  positive = np.maximum(m, 0.0)
  total = positive.sum()
  return 0.0 if total == 0 else positive[mask].sum() / total


def relevance_mass_accuracy(
    map: jax.typing.ArrayLike,  # pylint: disable=redefined-builtin
    mask: jax.typing.ArrayLike,
) -> Score:
  """The share of the map's positive mass that lies inside the mask.

  Negative values are ignored (Arras et al. 2022). A map with no positive
  value scores 0.

  Args:
    map: HxW (or NxHxW) scores.
    mask: boolean (or 0/1) ground truth of the same shape, non-empty.

  Returns:
    A float in [0, 1], or an (N,) array for a batch.
  """
  m, mask = _map_and_mask(map, mask)
  return _per_image(_mass, m, mask)


def _rank(m: np.ndarray, mask: np.ndarray) -> float:
  values, inside = m.ravel(), mask.ravel()
  k = np.count_nonzero(inside)
  threshold = np.partition(values, values.size - k)[values.size - k]
  above, tied = values > threshold, values == threshold
  hits = np.count_nonzero(above & inside)
  # The k - |above| places left go to tied pixels drawn at random.
  share = np.count_nonzero(tied & inside) / np.count_nonzero(tied)
  return (hits + (k - np.count_nonzero(above)) * share) / k


def rank_accuracy(
    map: jax.typing.ArrayLike,  # pylint: disable=redefined-builtin
    mask: jax.typing.ArrayLike,
) -> Score:
  """The share of the K highest-scoring pixels inside the mask, K = |mask|.

  Ties at the K-th value are shared out by expectation: of the pixels tied at
  the threshold, the places left are filled at random, so they count with the
  share of tied pixels that are inside the mask.

  Args:
    map: HxW (or NxHxW) scores, higher = more relevant (signed values are
      ranked as they are).
    mask: boolean (or 0/1) ground truth of the same shape, non-empty.

  Returns:
    A float in [0, 1], or an (N,) array for a batch.
  """
  m, mask = _map_and_mask(map, mask)
  return _per_image(_rank, m, mask)


def pixel_flipping(
    predict_fn: Callable[[np.ndarray], jax.typing.ArrayLike],
    image: jax.typing.ArrayLike,
    relevance_map: jax.typing.ArrayLike,
    *,
    steps: int = 20,
    baseline: jax.typing.ArrayLike = 0.0,
    batch_size: int | None = None,
) -> PixelFlipping:
  """Most-relevant-first pixel flipping and its AOPC (Samek et al. 2017).

  Pixels are ordered by `relevance_map`, highest first (ties in raster order,
  a stable sort). At step k the first round(k * H*W / steps) pixels (all their
  channels) are set to `baseline`, and `predict_fn` scores the result. A good
  map makes the score fall fast, which gives a large AOPC,
  (1 / (steps + 1)) * sum_k (curve[0] - curve[k]).

  Args:
    predict_fn: maps a batch (B, H, W, C) of perturbed images to the (B,)
      scores of the explained class (a logit or a probability).
    image: HxWxC image, in whatever form `predict_fn` takes.
    relevance_map: HxW scores, or HxWxC (summed over channels).
    steps: the number of perturbation steps (>= 1, <= H*W).
    baseline: the value flipped pixels get: a scalar, a (C,) colour or an
      HxWxC image (e.g. a blurred copy).
    batch_size: how many perturbed images go to `predict_fn` at once; None
      sends all steps + 1 together.

  Returns:
    `PixelFlipping(fractions, curve, aopc)`.
  """
  x = np.asarray(image)
  if x.ndim != 3:
    raise ValueError(f"`image` (shape={x.shape}) must be HxWxC.")
  r = as_map(relevance_map, "relevance_map")
  if r.shape == x.shape:
    r = r.sum(axis=-1)
  if r.shape != x.shape[:2]:
    raise ValueError(
        f"`relevance_map` (shape={r.shape}) must be HxW or HxWxC matching "
        f"`image` (shape={x.shape}).")
  n = r.size
  if not (isinstance(steps, (int, np.integer)) and 1 <= steps <= n):
    raise ValueError(f"`steps` (={steps!r}) must be an integer in 1..{n}.")
  if batch_size is not None and batch_size < 1:
    raise ValueError(f"`batch_size` (={batch_size!r}) must be >= 1 or None.")
  fill = np.broadcast_to(np.asarray(baseline, x.dtype), x.shape).reshape(n, -1)
  order = np.argsort(-r.ravel(), kind="stable")
  counts = np.round(np.arange(steps + 1) * n / steps).astype(int)
  flat = x.reshape(n, -1)
  perturbed = np.repeat(flat[None], steps + 1, axis=0)
  for i, c in enumerate(counts):
    perturbed[i, order[:c]] = fill[order[:c]]
  perturbed = perturbed.reshape((steps + 1,) + x.shape)
  size = batch_size or steps + 1
  scores = [np.asarray(predict_fn(perturbed[i:i + size]), np.float64)
            for i in range(0, steps + 1, size)]
  curve = np.concatenate([s.reshape(-1) for s in scores])
  if curve.shape != (steps + 1,):
    raise ValueError(
        f"`predict_fn` returned {curve.size} scores for {steps + 1} images; it "
        "must return one score per image.")
  aopc = float(np.mean(curve[0] - curve))
  return PixelFlipping(counts / n, curve, aopc)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
  ra, rb = stats.rankdata(a.ravel()), stats.rankdata(b.ravel())
  ra, rb = ra - ra.mean(), rb - rb.mean()
  denom = math.sqrt(float((ra * ra).sum() * (rb * rb).sum()))
  return 0.0 if denom == 0 else float((ra * rb).sum() / denom)


def randomization_similarity(
    map_a: jax.typing.ArrayLike,
    map_b: jax.typing.ArrayLike,
    *,
    absolute: bool = False,
) -> RandomizationSimilarity:
  """Similarity of two maps, for the model-randomisation sanity check.

  Adebayo et al. (2018) compare a method's map on the trained model with its
  map after randomising the weights (layer by layer, from the top). A method
  that depends on the model gives low similarity.

  Args:
    map_a: HxW map (or NxHxW batch).
    map_b: a map of the same shape.
    absolute: compare |map| instead of the signed maps (the paper reports
      both).

  Returns:
    `RandomizationSimilarity(spearman, ssim)`: Spearman's rank correlation
    (average ranks for ties; 0 when either map is constant) and SSIM of the
    min-max normalised maps (data_range=1, 7x7 window). Floats, or (N,) arrays
    for a batch.
  """
  a = as_map(map_a, "map_a")
  b = as_map(map_b, "map_b")
  _check_plane(a, "map_a")
  if b.shape != a.shape:
    raise ValueError(
        f"`map_b` (shape={b.shape}) must have the shape of `map_a` "
        f"(={a.shape}).")
  _check_ssim_size(a.shape[-2:], "map_a")
  if absolute:
    a, b = np.abs(a), np.abs(b)
  return RandomizationSimilarity(
      _per_image(_spearman, a, b), _per_image(_ssim, a, b))
