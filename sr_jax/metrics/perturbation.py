"""Perturbation curves: pixel flipping and region perturbation, with AOPC.

Both remove what the map calls most relevant first and watch the model's
score fall; a good map makes it fall fast, which gives a large area over the
perturbation curve (AOPC). The model is only a function from a batch of
images to scores, so any model fits.

References:
  Samek, Binder, Montavon, Lapuschkin, Mueller (2017), "Evaluating the
  visualization of what a deep neural network has learned" (region
  perturbation, MoRF order, AOPC = mean over k of f(x_0) - f(x_k)).
"""

from __future__ import annotations

from typing import Callable, Iterator, NamedTuple, Optional, Union

import jax
import numpy as np

from sr_jax.metrics._common import as_key, as_map

__all__ = ["BASELINES", "PixelFlipping", "RegionPerturbation",
           "pixel_flipping", "region_perturbation"]

Baseline = Union[str, float, jax.typing.ArrayLike]
BASELINES = ("mean", "zero")


class PixelFlipping(NamedTuple):
  """A perturbation curve: the score after flipping each fraction of pixels."""
  fractions: np.ndarray  # (steps + 1,) share of pixels flipped, 0 .. 1
  curve: np.ndarray  # (steps + 1,) predict_fn's score at each fraction
  aopc: float  # mean over k of curve[0] - curve[k]; higher = better map


class RegionPerturbation(NamedTuple):
  """Region perturbation in the map's order and in a random order."""
  regions: np.ndarray  # (steps + 1,) regions replaced so far, 0 .. steps
  curve: np.ndarray  # (steps + 1,) target probability, most relevant first
  aopc: float  # mean over k of curve[0] - curve[k]; higher = better map
  random_curve: Optional[np.ndarray]  # the same, random order (None: no key)
  random_aopc: Optional[float]
  target: int  # the class whose probability is followed


def _image_and_map(image, relevance_map) -> tuple[np.ndarray, np.ndarray]:
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
  return x, r


def _fill(baseline: Baseline, x: np.ndarray) -> np.ndarray:
  """The (H*W, C) values that replaced pixels get, in `x`'s dtype."""
  if isinstance(baseline, str):
    if baseline not in BASELINES:
      raise ValueError(f"`baseline` (={baseline!r}) must be one of "
                       f"{BASELINES}, a number, a (C,) colour or an HxWxC "
                       "image.")
    value = (x.reshape(-1, x.shape[-1]).mean(0, dtype=np.float64)
             if baseline == "mean" else np.zeros(()))
  else:
    value = np.asarray(baseline)
  try:
    value = np.broadcast_to(value, x.shape)
  except ValueError:
    raise ValueError(
        f"`baseline` (shape={value.shape}) must be a scalar, a (C,) colour or "
        f"an image of `image`'s shape (={x.shape}).") from None
  if np.issubdtype(x.dtype, np.integer):
    value = np.rint(value)
  return value.astype(x.dtype).reshape(-1, x.shape[-1])


def _check_batch_size(batch_size: Optional[int]) -> None:
  if batch_size is not None and not (
      isinstance(batch_size, (int, np.integer)) and batch_size >= 1):
    raise ValueError(f"`batch_size` (={batch_size!r}) must be >= 1 or None.")


def _perturbed(x: np.ndarray, fill: np.ndarray, order: np.ndarray,
               counts: np.ndarray, size: int) -> Iterator[np.ndarray]:
  """Batches of `x` with the first counts[k] pixels of `order` replaced."""
  flat = x.reshape(-1, x.shape[-1]).copy()
  batch, done = [], 0
  for c in counts:
    flat[order[done:c]] = fill[order[done:c]]
    done = c
    batch.append(flat.reshape(x.shape).copy())
    if len(batch) == size:
      yield np.stack(batch)
      batch = []
  if batch:
    yield np.stack(batch)


def _scores(predict_fn, batches: Iterator[np.ndarray], *,
            rows: bool) -> np.ndarray:
  """predict_fn over the batches: (n, 1) scores, or (n, K) probability rows."""
  out = []
  for b in batches:
    s = np.asarray(predict_fn(b), np.float64)
    if rows and (s.ndim != 2 or len(s) != len(b)):
      raise ValueError(
          f"`predict_fn` returned shape {s.shape} for {len(b)} images; it must "
          "return one row of class probabilities per image, (B, K).")
    if not rows and s.size != len(b):
      raise ValueError(
          f"`predict_fn` returned {s.size} scores for {len(b)} images; it must "
          "return one score per image.")
    out.append(s.reshape(len(b), -1))
  return np.concatenate(out)


def pixel_flipping(
    predict_fn: Callable[[np.ndarray], jax.typing.ArrayLike],
    image: jax.typing.ArrayLike,
    relevance_map: jax.typing.ArrayLike,
    *,
    steps: int = 20,
    baseline: Baseline = 0.0,
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
    baseline: the value flipped pixels get: a scalar (default 0), a (C,)
      colour, an HxWxC image (e.g. a blurred copy), "zero" or "mean" (the
      image's mean colour).
    batch_size: how many perturbed images go to `predict_fn` at once; None
      sends all steps + 1 together.

  Returns:
    `PixelFlipping(fractions, curve, aopc)`.

  Raises:
    ValueError: for shapes that disagree, bad `steps`, `baseline` or
      `batch_size`, or a `predict_fn` that does not give one score per image.
  """
  x, r = _image_and_map(image, relevance_map)
  n = r.size
  if not (isinstance(steps, (int, np.integer)) and 1 <= steps <= n):
    raise ValueError(f"`steps` (={steps!r}) must be an integer in 1..{n}.")
  _check_batch_size(batch_size)
  fill = _fill(baseline, x)
  order = np.argsort(-r.ravel(), kind="stable")
  counts = np.round(np.arange(steps + 1) * n / steps).astype(int)
  batches = _perturbed(x, fill, order, counts, batch_size or steps + 1)
  curve = _scores(predict_fn, batches, rows=False)[:, 0]
  return PixelFlipping(counts / n, curve, float(np.mean(curve[0] - curve)))


def _patch_ids(shape: tuple[int, int], patch: int) -> np.ndarray:
  """The index of each pixel's patch on a grid of patch x patch squares."""
  h, w = shape
  cols = -(-w // patch)
  return (np.arange(h)[:, None] // patch) * cols + np.arange(w)[None] // patch


def _region_curve(predict_fn, x, fill, ids, ranking, steps, size):
  """Probabilities (steps + 1, K) replacing whole regions in `ranking`."""
  flat_ids = ids.ravel()
  # Pixels grouped by their region's place in `ranking`, raster order inside.
  place = np.empty(ranking.size, np.int64)
  place[ranking] = np.arange(ranking.size)
  order = np.argsort(place[flat_ids], kind="stable")
  sizes = np.bincount(flat_ids, minlength=ranking.size)[ranking]
  counts = np.concatenate([[0], np.cumsum(sizes)[:steps]])
  return _scores(predict_fn, _perturbed(x, fill, order, counts, size),
                 rows=True)


def region_perturbation(
    predict_fn: Callable[[np.ndarray], jax.typing.ArrayLike],
    image: jax.typing.ArrayLike,
    relevance_map: jax.typing.ArrayLike,
    *,
    baseline: Baseline,
    patch: int = 9,
    steps: int | None = None,
    target: int | None = None,
    key: jax.typing.ArrayLike | int | None = None,
    batch_size: int | None = 64,
) -> RegionPerturbation:
  """Region perturbation, most relevant first (MoRF), against a random order
  (Samek et al. 2017).

  The image is cut into non-overlapping `patch` x `patch` squares (smaller
  ones at the right and bottom borders), each ranked by the mean of
  `relevance_map` over it, highest first (ties in raster order). Step k
  replaces the first k regions, all channels, by `baseline`; the curve is
  the probability of `target` after each step, and
  AOPC = (1 / (steps + 1)) * sum_k (curve[0] - curve[k]). With a `key`, the
  same is measured for a uniformly random order of the regions, the
  reference a map must beat. Samek et al. used 9x9 regions; they replaced
  them with uniform noise, here the replacement is the stated `baseline`.

  Args:
    predict_fn: maps a batch (B, H, W, C) of images to (B, K) class
      probabilities.
    image: HxWxC image, in whatever form `predict_fn` takes.
    relevance_map: HxW scores, or HxWxC (summed over channels).
    baseline: what replaced pixels get, required: "mean" (the image's mean
      colour), "zero", a number, a (C,) colour or an HxWxC image.
    patch: the side of the square regions, in pixels (>= 1).
    steps: how many regions are replaced in all; None: every region.
    target: the class followed; None takes the class most probable on the
      unperturbed image.
    key: a JAX PRNG key (or an int seed) for the random order; None measures
      only the map's order.
    batch_size: how many images go to `predict_fn` at once (None: all).

  Returns:
    `RegionPerturbation(regions, curve, aopc, random_curve, random_aopc,
    target)`.

  Raises:
    ValueError: for shapes that disagree, a bad `baseline`, `patch`,
      `steps`, `target` or `key`, or a `predict_fn` whose output is not one
      row of probabilities per image.

  Examples:
    >>> out = region_perturbation(  # doctest: +SKIP
    ...     model_probs, image, R.sum(-1), baseline="mean",
    ...     key=jax.random.key(0))
    >>> out.aopc > out.random_aopc  # doctest: +SKIP
  """
  x, r = _image_and_map(image, relevance_map)
  if not (isinstance(patch, (int, np.integer)) and 1 <= patch <= min(r.shape)):
    raise ValueError(
        f"`patch` (={patch!r}) must be an integer in 1..{min(r.shape)}.")
  ids = _patch_ids(r.shape, patch)
  count = int(ids.max()) + 1
  steps = count if steps is None else steps
  if not (isinstance(steps, (int, np.integer)) and 1 <= steps <= count):
    raise ValueError(f"`steps` (={steps!r}) must be an integer in 1..{count} "
                     "(the number of regions) or None.")
  _check_batch_size(batch_size)
  fill = _fill(baseline, x)
  rng_key = None if key is None else as_key(key)
  size = batch_size or steps + 1
  relevance = np.bincount(ids.ravel(), r.ravel()) / np.bincount(ids.ravel())
  probs = _region_curve(predict_fn, x, fill, ids,
                        np.argsort(-relevance, kind="stable"), steps, size)
  classes = probs.shape[1]
  if target is None:
    target = int(np.argmax(probs[0]))
  if not (isinstance(target, (int, np.integer)) and 0 <= target < classes):
    raise ValueError(
        f"`target` (={target!r}) must be a class index in 0..{classes - 1}.")
  curve = probs[:, target]
  random_curve = random_aopc = None
  if rng_key is not None:
    ranking = np.asarray(jax.random.permutation(rng_key, count))
    random_curve = _region_curve(predict_fn, x, fill, ids, ranking, steps,
                                 size)[:, target]
    random_aopc = float(np.mean(random_curve[0] - random_curve))
  return RegionPerturbation(np.arange(steps + 1), curve,
                            float(np.mean(curve[0] - curve)), random_curve,
                            random_aopc, int(target))
