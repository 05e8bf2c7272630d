"""Every measure of one batch of maps, per image, each with its chance level.

Each function takes a batch of HxW planes (see `explain`) and returns one
dict of JSON-ready numbers per image. Beside each score is what a map that
knows nothing about the object would score on the same image ("..._chance"),
so that a score is read against its own chance level:

* pointing game: the share of pixels within the tolerance of the mask (where
  a uniformly random maximum falls);
* IoU, relevance mass, rank accuracy, segmentation: a region of the same
  size placed at random, |R| |M| / (|R| + |M| - |R| |M|) in image fractions
  for IoU, the mask's area share for the other two;
* region perturbation: the same regions removed in a random order;
* SSIM (to the image's saliency, and randomisation's): the same map with
  its pixels shuffled (SSIM of unrelated maps is not 0: its stabilising
  constants make it slightly positive);
* Spearman correlations (class sensitivity, randomisation): 0.

The protocols are those of `sr_jax.metrics`, which cites each paper.
"""

from __future__ import annotations

import concurrent.futures
from typing import Any, Callable, Optional, Sequence

import jax
import numpy as np
from scipy import ndimage

from sr_jax import metrics
from sr_jax.metrics.localisation import top_region
from sr_jax.metrics.ssim import map_ssim

Record = dict[str, Any]


def _region_chance(area: np.ndarray, mask_area: float) -> np.ndarray:
  """Expected IoU of a randomly placed region of `area` (image fractions)."""
  area = np.asarray(area, np.float64)
  union = area + mask_area - area * mask_area
  return np.where(union > 0, area * mask_area / np.where(union > 0, union, 1),
                  0.0)


def _auc(curve: np.ndarray, levels: np.ndarray) -> float:
  """Mean of a curve over [levels[0], levels[-1]] (trapezoids)."""
  if len(levels) == 1:
    return float(curve[0])
  return float(np.trapezoid(curve, levels) / (levels[-1] - levels[0]))


def localisation(planes: np.ndarray, masks: np.ndarray, *, tolerance: float,
                 levels: Sequence[float]) -> list[Record]:
  """Pointing game, IoU curve (by mass), relevance mass and rank accuracy.

  Args:
    planes: (B, H, W) maps, higher = more relevant.
    masks: (B, H, W) non-empty ground truth.
    tolerance: the pointing game's hit radius in pixels.
    levels: the IoU curve's shares of the map's mass.

  Returns:
    One record per image: "pointing", "iou" (per level), "iou_auc",
    "relevance_mass", "rank_accuracy", each with its "..._chance".
  """
  hits = metrics.pointing_game(planes, masks, tolerance=tolerance)
  curve = metrics.iou_curve(planes, masks, levels=levels, by="mass")
  mass = metrics.relevance_mass_accuracy(planes, masks)
  rank = metrics.rank_accuracy(planes, masks)
  q = np.asarray(levels, np.float64)
  out = []
  for i, (plane, mask) in enumerate(zip(planes, masks)):
    m = float(mask.mean())
    grown = ndimage.distance_transform_edt(~mask) <= tolerance
    areas = [top_region(plane, level, "mass").mean() for level in q]
    chance = _region_chance(np.array(areas), m)
    out.append({
        "pointing": float(hits[i]), "pointing_chance": float(grown.mean()),
        "iou": [float(v) for v in curve.iou[i]],
        "iou_auc": float(curve.auc[i]),
        "iou_chance": [float(v) for v in chance],
        "iou_auc_chance": _auc(chance, q),
        "relevance_mass": float(mass[i]), "relevance_mass_chance": m,
        "rank_accuracy": float(rank[i]), "rank_accuracy_chance": m})
  return out


def grabcut_available() -> bool:
  """Whether OpenCV (the "segment" extra) can be imported."""
  try:
    import cv2  # pylint: disable=import-outside-toplevel,unused-import
  except ImportError:
    return False
  return True


def segmentation(images: np.ndarray, planes: np.ndarray,
                 masks: np.ndarray) -> list[Record]:
  """IoU of the GrabCut mask seeded by each map with the object's mask
  (Simonyan et al. 2014, §3.1; `sr_jax.interpret.segment`, its defaults).

  A map too flat to seed GrabCut (its 95% and 30% quantiles coincide)
  segments nothing: IoU 0, recorded as "segmentation_unseeded".
  """
  from sr_jax.interpret import segment  # pylint: disable=import-outside-toplevel

  def one(image, plane):
    try:
      return segment(image, plane).mask, False
    except ValueError:
      return np.zeros(image.shape[:2], bool), True

  # OpenCV releases the GIL: the images' GrabCuts run on two threads.
  with concurrent.futures.ThreadPoolExecutor(2) as pool:
    segs = list(pool.map(one, images, planes))
  out = []
  for (seg, unseeded), mask in zip(segs, masks):
    union = np.count_nonzero(seg | mask)
    iou = np.count_nonzero(seg & mask) / union if union else 0.0
    out.append({"segmentation_iou": float(iou),
                "segmentation_iou_chance": float(
                    _region_chance(seg.mean(), mask.mean())),
                "segmentation_unseeded": unseeded})
  return out


def complexity(planes: np.ndarray) -> list[Record]:
  """Gini sparseness and entropy of |map|, per image."""
  gini = metrics.gini_sparseness(planes)
  entropy = metrics.map_entropy(planes)
  return [{"gini": float(g), "entropy": float(h)}
          for g, h in zip(gini, entropy)]


def uniform_noise_reference(shape: Sequence[int]) -> dict[str, float]:
  """Gini and entropy of an HxW map of i.i.d. uniform noise, in expectation:
  the Gini index of U(0, 1) is 1/3, and the entropy of n normalized U(0, 1)
  values is log(n / 2) + 1/2 (to O(1/n))."""
  n = int(np.prod(shape[-2:]))
  return {"gini": 1.0 / 3.0, "entropy": float(np.log(n / 2.0) + 0.5)}


def shuffled(plane: np.ndarray) -> np.ndarray:
  """The plane's pixels in a random order (a fixed one per plane size): the
  same values, no structure."""
  order = np.random.default_rng(plane.size).permutation(plane.size)
  return plane.ravel()[order].reshape(plane.shape)


def ssim(planes: np.ndarray, image_saliency: np.ndarray,
         base: Optional[np.ndarray] = None) -> list[Record]:
  """SSIM of each map with the image's own saliency; with `base` (an SR
  row's method map) also the SR paper's ratio SSIM(SR) / SSIM(map)."""
  out = [{"ssim_saliency": map_ssim(p, s),
          "ssim_saliency_chance": map_ssim(shuffled(p), s)}
         for p, s in zip(planes, image_saliency)]
  if base is not None:
    r = metrics.ssim_ratio(base, planes, image_saliency)
    for rec, s1, q in zip(out, r.ssim_lrp, r.ratio):
      rec.update(ssim_base=float(s1), ssim_ratio=float(q))
  return out


def region_ids(shape: Sequence[int], patch: int) -> np.ndarray:
  """Each pixel's square region of side `patch` (raster order)."""
  h, w = shape
  cols = -(-w // patch)
  return (np.arange(h)[:, None] // patch) * cols + np.arange(w)[None] // patch


def random_order_planes(shape: Sequence[int], patch: int, seeds: Sequence[int]
                        ) -> np.ndarray:
  """Maps whose regions rank in a random order (one permutation per seed):
  region perturbation of such a map is the protocol's random order."""
  ids = region_ids(shape, patch)
  count = int(ids.max()) + 1
  return np.stack([np.random.default_rng(s).permutation(count)[ids]
                   for s in seeds]).astype(np.float64)


def perturbation(predict: Callable[[np.ndarray], np.ndarray],
                 images: np.ndarray, planes: np.ndarray,
                 targets: np.ndarray, *, patch: int, steps: int,
                 baseline: str) -> list[Record]:
  """Region perturbation, most relevant first (Samek et al. 2017).

  Returns:
    One record per image: "aopc" and the probability "curve" of the target.
  """
  out = []
  for image, plane, t in zip(images, planes, targets):
    r = metrics.region_perturbation(predict, image, plane, baseline=baseline,
                                    patch=patch, steps=steps, target=int(t),
                                    batch_size=steps + 1)
    out.append({"aopc": r.aopc, "curve": [float(v) for v in r.curve]})
  return out


def class_sensitivity(explain: Callable[..., np.ndarray], x: np.ndarray,
                      probabilities: np.ndarray) -> list[Record]:
  """Spearman of the maps for the most and the least probable class
  (Rebuffi et al. 2020); `explain(x, targets, salt)` gives planes."""
  most, least = metrics.extreme_classes(probabilities)
  a, b = explain(x, most, 1), explain(x, least, 2)
  rho = metrics.class_sensitivity(a, b).per_image
  return [{"class_sensitivity": float(v), "class_sensitivity_chance": 0.0}
          for v in rho]


def gaussian_like_numpy(key: jax.Array, leaf: Any) -> np.ndarray:
  """`sr_jax.metrics.gaussian_like` drawn with NumPy: Gaussian with the
  leaf's own mean and std, seeded by `key`. It compiles nothing, where the
  jitted draw compiles once per leaf shape (18 compilations for a VGG)."""
  seed = np.asarray(jax.random.key_data(key)).ravel().tolist()
  a = np.asarray(leaf)
  noise = np.random.default_rng(seed).standard_normal(a.shape)
  return (a.mean() + a.std() * noise).astype(a.dtype)


def randomization(explain: Callable[..., np.ndarray], variables: Any,
                  x: np.ndarray, targets: np.ndarray, layers: Sequence[str],
                  *, seed: int, planes: np.ndarray) -> list[Record]:
  """Cascading and independent randomisation from the top layer down
  (Adebayo et al. 2018): Spearman of |map| and SSIM with the trained
  model's map at each step; `explain(x, targets, salt, params)` gives
  planes, `planes` are the trained model's (for the SSIM chance level: the
  map against its shuffled self)."""
  per_mode = {}
  for mode in ("cascading", "independent"):
    salt = [100 if mode == "cascading" else 200]

    def fn(params, xs):
      salt[0] += 1
      return explain(xs, targets, salt[0], params)

    per_mode[mode] = metrics.model_randomization(
        fn, variables, x, layers, key=jax.random.key(seed), mode=mode,
        reinit=gaussian_like_numpy)
  out = []
  for i in range(len(x)):
    rec: Record = {}
    for mode, r in per_mode.items():
      rho, sim = r.spearman[:, i], r.ssim[:, i]
      rec[f"randomization_{mode}"] = {"spearman": [float(v) for v in rho],
                                      "ssim": [float(v) for v in sim]}
    casc, ind = per_mode["cascading"], per_mode["independent"]
    rec.update({
        "randomization_cascading_spearman": float(casc.spearman[-1, i]),
        "randomization_cascading_ssim": float(casc.ssim[-1, i]),
        "randomization_independent_spearman": float(
            ind.spearman[:, i].mean()),
        "randomization_independent_ssim": float(ind.ssim[:, i].mean())})
    chance = float(np.mean(metrics.randomization_similarity(
        planes[i], shuffled(planes[i]), absolute=True).ssim))
    for mode in ("cascading", "independent"):
      rec[f"randomization_{mode}_spearman_chance"] = 0.0
      rec[f"randomization_{mode}_ssim_chance"] = chance
    out.append(rec)
  return out
