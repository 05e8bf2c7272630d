"""Localisation against ground-truth masks: the pointing game, relevance mass,
rank accuracy and An8Flower-style IoU curves.

Every function takes one HxW map with an HxW mask, or a batch (N, H, W) with
masks (N, H, W), and then returns a float per image as an (N,) array. Ties
are scored by their expectation under a uniformly random tie-break, so that a
constant map (no information) scores chance level rather than a hit.

References:
  Zhang, Bargal, Lin, Brandt, Shen, Sclaroff (2016), "Top-down neural
  attention by excitation backprop" (the pointing game); Rebuffi, Fong, Ji,
  Vedaldi (2020), "There and back again: revisiting backpropagation saliency
  methods" (its TorchRay implementation); Arras, Osman, Samek (2022),
  "CLEVR-XAI" (relevance mass and rank accuracy); Oramas, Wang, Tuytelaars
  (2019), "Visual explanation by interpretation" (An8Flower, IoU of the
  thresholded map with the discriminative parts).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import numpy as np
from scipy import ndimage

from sr_jax.metrics._common import Score, map_and_mask, per_image

__all__ = ["IoUCurve", "PointingGameResult", "POINTING_REFERENCE_SIZE",
           "POINTING_TOLERANCE", "iou_curve", "pointing_game",
           "pointing_game_accuracy", "pointing_tolerance", "rank_accuracy",
           "relevance_mass_accuracy"]

POINTING_TOLERANCE = 15.0  # pixels, Zhang et al. (2016) and TorchRay ...
POINTING_REFERENCE_SIZE = 224  # ... at this image side
IOU_LEVELS = (0.05, 0.1, 0.2, 0.5)


class PointingGameResult(NamedTuple):
  """The pointing game over a set of images (Zhang et al. 2016)."""
  accuracy: float  # mean over classes of hits / (hits + misses)
  classes: np.ndarray  # (K,) the classes that occur, ascending
  class_accuracy: np.ndarray  # (K,) hits / (hits + misses) of each class
  hits: np.ndarray  # (N,) each image's hit, in [0, 1] (ties: expectation)
  tolerance: float  # the tolerance used, in pixels


class IoUCurve(NamedTuple):
  """IoU of the thresholded map with the mask, level by level."""
  levels: np.ndarray  # (L,) the shares of mass (or area) kept
  iou: np.ndarray  # (L,) IoU at each level, or (N, L) for a batch
  auc: Score  # area under iou(levels) / (levels[-1] - levels[0])


def pointing_tolerance(shape: Sequence[int], *,
                       pixels: float = POINTING_TOLERANCE,
                       reference_size: int = POINTING_REFERENCE_SIZE) -> float:
  """The pointing game's tolerance scaled to an image of `shape`.

  `pixels * min(H, W) / reference_size`: 15 px at a 224-px side (the
  protocol's value), about 4.29 px at 64 px. The shorter side is the one
  that ImageNet preprocessing brings to 224.

  Args:
    shape: the map's shape; its last two entries are H and W.
    pixels: the tolerance at `reference_size`.
    reference_size: the image side at which `pixels` holds.

  Returns:
    The tolerance in pixels.

  Examples:
    >>> pointing_tolerance((224, 300)), round(pointing_tolerance((64, 64)), 2)
    (15.0, 4.29)
  """
  if len(shape) < 2 or min(shape[-2:]) < 1:
    raise ValueError(f"`shape` (={tuple(shape)!r}) must end with H, W >= 1.")
  if not pixels >= 0 or not reference_size > 0:
    raise ValueError(
        f"`pixels` (={pixels!r}) must be >= 0 and `reference_size` "
        f"(={reference_size!r}) > 0.")
  return float(pixels) * min(shape[-2:]) / reference_size


def _pointing(m: np.ndarray, region: np.ndarray) -> float:
  if not region.any():
    return 0.0  # an empty mask is never a hit
  top = m == m.max()
  return np.count_nonzero(top & region) / np.count_nonzero(top)


def _grow(mask: np.ndarray, tolerance: float) -> np.ndarray:
  """Pixels within `tolerance` (Euclidean, inclusive) of a True pixel."""
  if tolerance == 0 or not mask.any():
    return mask
  return ndimage.distance_transform_edt(~mask) <= tolerance


def pointing_game(
    map: jax.typing.ArrayLike,  # pylint: disable=redefined-builtin
    mask: jax.typing.ArrayLike,
    *,
    tolerance: float = 0,
    allow_empty: bool = False,
) -> Score:
  """Whether the map's maximum falls on the mask (Zhang et al. 2016).

  The point is the argmax of the map, which must have the image's size (the
  mask's). It is a hit when a mask pixel lies within `tolerance` pixels of it
  (Euclidean distance <= tolerance; TorchRay tests < tolerance, which differs
  only on that circle). Ties: when several pixels share the maximum, the
  score is the share of them that hit, i.e. the expected hit under a random
  choice among them. A constant map thus scores chance level.
  `pointing_game_accuracy` gives the protocol's class-averaged score.

  Args:
    map: HxW (or NxHxW) scores, higher = more relevant.
    mask: boolean (or 0/1) ground truth of the same shape.
    tolerance: the hit radius in pixels; Zhang et al. used 15 at 224 px
      (`pointing_tolerance` scales it to the image).
    allow_empty: whether an empty mask is allowed; it is never a hit (0.0).
      False raises a ValueError for an empty mask.

  Returns:
    1.0 for a hit and 0.0 for a miss (fractions for ties); an (N,) array for
    a batch.

  Raises:
    ValueError: if the map is not finite, the shapes disagree, `tolerance`
      is negative, or a mask is empty while `allow_empty` is False.

  Examples:
    >>> pointing_game(np.eye(3), np.eye(3, dtype=bool))  # 3 tied maxima, all in
    1.0
  """
  m, mask = map_and_mask(map, mask, allow_empty=allow_empty)
  if not (np.isscalar(tolerance) and tolerance >= 0):
    raise ValueError(f"`tolerance` (={tolerance!r}) must be a number >= 0.")
  if mask.ndim == 2:
    mask = _grow(mask, tolerance)
  else:
    mask = np.stack([_grow(k, tolerance) for k in mask])
  return per_image(_pointing, m, mask)


def pointing_game_accuracy(
    maps: jax.typing.ArrayLike,
    masks: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    *,
    tolerance: float | None = None,
) -> PointingGameResult:
  """The pointing game's score over a set: the mean over classes of
  hits / (hits + misses) (Zhang et al. 2016; Rebuffi et al. 2020).

  Each (image, class) pair is one trial of `pointing_game`. The tolerance is
  `pointing_tolerance(maps.shape)` unless given: 15 px * min(H, W) / 224,
  i.e. 15 px at 224 px and 4.29 px at 64 px. An empty mask (the class has no
  ground truth in that image) counts as a miss, as in TorchRay's
  `PointingGame.evaluate`, which this follows; pairs that should not count
  must be left out by the caller. The mean runs over the classes that occur
  in `labels` (TorchRay averages over all of its classes, where an absent
  class scores 0).

  Args:
    maps: NxHxW maps at the images' size, higher = more relevant.
    masks: NxHxW boolean (or 0/1) ground truth of each map's class.
    labels: (N,) integer class of each map.
    tolerance: the hit radius in pixels; None scales 15 px at 224.

  Returns:
    `PointingGameResult(accuracy, classes, class_accuracy, hits, tolerance)`.

  Raises:
    ValueError: for maps that are not a finite NxHxW stack, masks of another
      shape, or labels that are not N integers.

  Examples:
    >>> maps = np.zeros((2, 8, 8)); maps[:, 2, 2] = 1
    >>> masks = np.zeros((2, 8, 8), bool); masks[0, 2, 2] = True
    >>> r = pointing_game_accuracy(maps, masks, [0, 1])
    >>> r.accuracy, r.class_accuracy.tolist()  # class 1's mask is empty
    (0.5, [1.0, 0.0])
  """
  m, k = map_and_mask(maps, masks, allow_empty=True)
  if m.ndim != 3:
    raise ValueError(f"`maps` (shape={m.shape}) must be a batch NxHxW.")
  y = np.asarray(labels)
  if y.shape != (m.shape[0],) or not np.issubdtype(y.dtype, np.integer):
    raise ValueError(
        f"`labels` (shape={y.shape}, dtype={y.dtype}) must hold one integer "
        f"per map ({m.shape[0]}).")
  tol = pointing_tolerance(m.shape) if tolerance is None else tolerance
  hits = pointing_game(m, k, tolerance=tol, allow_empty=True)
  classes = np.unique(y)
  per_class = np.array([hits[y == c].mean() for c in classes], np.float64)
  return PointingGameResult(float(per_class.mean()), classes, per_class,
                            hits, float(tol))


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
  m, mask = map_and_mask(map, mask)
  return per_image(_mass, m, mask)


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
  m, mask = map_and_mask(map, mask)
  return per_image(_rank, m, mask)


def top_region(m: np.ndarray, level: float, by: str) -> np.ndarray:
  """The pixels of the HxW map `m` that hold its top `level` of mass or area.

  "mass": the highest pixels whose positive values sum to at least `level`
  of the total positive mass (empty when there is none). "area": the highest
  ceil(level * H*W) pixels. Every pixel tied with the last one chosen is
  included too, so the region does not depend on any ordering.
  """
  values = np.sort(m.ravel())[::-1]
  if by == "mass":
    cumulative = np.cumsum(np.maximum(values, 0.0))
    if cumulative[-1] == 0:
      return np.zeros(m.shape, bool)
    k = int(np.searchsorted(cumulative, level * cumulative[-1]))
    return (m >= values[min(k, values.size - 1)]) & (m > 0)
  k = max(int(np.ceil(level * values.size)), 1)
  return m >= values[k - 1]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
  union = np.count_nonzero(a | b)
  return 0.0 if union == 0 else np.count_nonzero(a & b) / union


def iou_curve(
    map: jax.typing.ArrayLike,  # pylint: disable=redefined-builtin
    mask: jax.typing.ArrayLike,
    *,
    levels: Sequence[float] = IOU_LEVELS,
    by: str = "mass",
) -> IoUCurve:
  """IoU of the map's top region with the discriminative parts, per level.

  The An8Flower protocol (Oramas et al. 2019): the map is thresholded at
  several levels and each region is compared with the mask of the parts that
  decide the class, by intersection over union. At level q the region is the
  set of highest pixels that holds a share q of the map's positive mass
  (`by="mass"`, negative values count as 0) or of its pixels (`by="area"`,
  values ranked as they are); pixels tied at the threshold are all kept. The
  summary is the area under the IoU curve over the levels (trapezoids),
  divided by the levels' span: the mean IoU over [levels[0], levels[-1]] (the
  IoU itself for one level).

  Args:
    map: HxW (or NxHxW) scores at the image's size.
    mask: boolean (or 0/1) mask of the discriminative parts, non-empty.
    levels: increasing shares in (0, 1]; by default 5, 10, 20 and 50%.
    by: "mass" or "area".

  Returns:
    `IoUCurve(levels, iou, auc)`: `iou` is (L,) and `auc` a float, or (N, L)
    and (N,) for a batch.

  Raises:
    ValueError: for a non-finite map, a mask of another shape or empty, bad
      `levels` or an unknown `by`.

  Examples:
    >>> m = np.zeros((4, 4)); m[0, 0], m[0, 1] = 3.0, 1.0  # mass on 2 pixels
    >>> iou_curve(m, m > 0, levels=(0.5, 1.0)).iou.tolist()
    [0.5, 1.0]
  """
  m, k = map_and_mask(map, mask)
  if by not in ("mass", "area"):
    raise ValueError(f"`by` (={by!r}) must be 'mass' or 'area'.")
  q = np.asarray(levels, np.float64)
  if (q.ndim != 1 or q.size == 0 or not np.all(np.isfinite(q))
      or q.min() <= 0 or q.max() > 1 or np.any(np.diff(q) <= 0)):
    raise ValueError(
        f"`levels` (={levels!r}) must be increasing shares in (0, 1].")

  def curve(plane, truth):
    return np.array([_iou(top_region(plane, v, by), truth) for v in q])

  iou = curve(m, k) if m.ndim == 2 else np.stack(
      [curve(a, b) for a, b in zip(m, k)])
  if q.size == 1:
    auc = iou[..., 0]
  else:
    auc = (0.5 * (iou[..., 1:] + iou[..., :-1]) * np.diff(q)).sum(-1) / (
        q[-1] - q[0])
  return IoUCurve(q, iou, float(auc) if m.ndim == 2 else auc)
