"""The protocol's settings, and the records of one batch under it.

`Protocol` holds every number the measures use (stated in results.json);
`batch_records` computes one variant's maps for a batch and scores them with
every measure of its stage.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Optional, Sequence

import numpy as np

from sr_jax import metrics
from sr_jax.evaluation import measures
from sr_jax.evaluation.explain import Explainer
from sr_jax.evaluation.variants import Variant

IOU_LEVELS = (0.05, 0.1, 0.2, 0.5)
BASELINE = "mean"


@dataclasses.dataclass(frozen=True)
class Protocol:
  """The settings of every measure.

  Attributes:
    levels: the IoU curve's shares of the map's mass (Oramas et al. 2019).
    baseline: what region perturbation puts in place of a region: "mean"
      (the image's mean colour), "zero", or a number (Samek et al. 2017
      used noise; a stated constant is reproducible).
    patch: the side of the perturbed square regions; None: 1/8 of the
      image's side (8 px at 64, 28 px at 224).
    steps: regions replaced, most relevant first (16 of the 64 regions by
      default: a quarter of the image).
    random_orders: random orders averaged into each image's reference curve
      (the chance level of the map's order).
    sanity_n: images (the first of the set) that class sensitivity and
      randomisation run on, which cost 2 and 2 * (layers + 1) more maps.
    batch_size: images per batch.
    seed: seed of the random maps, the random orders, the randomised
      weights and the methods' PRNG keys.
    bootstrap_seed: seed of the bootstrap resamples.
    resamples: bootstrap resamples.
    level: the intervals' coverage.
  """

  levels: tuple[float, ...] = IOU_LEVELS
  baseline: Any = BASELINE
  patch: Optional[int] = None
  steps: int = 16
  random_orders: int = 4
  sanity_n: int = 10
  batch_size: int = 32
  seed: int = 0
  bootstrap_seed: int = 0
  resamples: int = 1000
  level: float = 0.95

  def __post_init__(self):
    for name in ("steps", "random_orders", "batch_size", "resamples"):
      v = getattr(self, name)
      if not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"`{name}` (={v!r}) must be an integer >= 1.")
    if not isinstance(self.sanity_n, (int, np.integer)) or self.sanity_n < 0:
      raise ValueError(f"`sanity_n` (={self.sanity_n!r}) must be an integer "
                       ">= 0.")
    if not (self.baseline in metrics.BASELINES or (
        isinstance(self.baseline, (int, float))
        and not isinstance(self.baseline, bool))):
      raise ValueError(f"`baseline` (={self.baseline!r}) must be one of "
                       f"{metrics.BASELINES} or a number.")
    if self.patch is not None and not (
        isinstance(self.patch, (int, np.integer)) and self.patch >= 1):
      raise ValueError(f"`patch` (={self.patch!r}) must be an integer >= 1 "
                       "or None.")

  def patch_for(self, side: int) -> int:
    return self.patch or max(1, side // 8)

  def describe(self, shape: Sequence[int]) -> dict[str, Any]:
    """Every setting, with the values derived for images of `shape`."""
    d = dataclasses.asdict(self)
    d["levels"] = list(self.levels)
    d["pointing_tolerance_px"] = metrics.pointing_tolerance(shape)
    d["pointing_tolerance_rule"] = "15 px at 224 px, scaled with min(H, W)"
    d["patch"] = self.patch_for(min(shape[-2:]))
    d["steps"] = min(self.steps, _region_count(shape, d["patch"]))
    d["iou_by"] = "mass"
    return d


def _region_count(shape: Sequence[int], patch: int) -> int:
  h, w = shape[-2:]
  return (-(-h // patch)) * (-(-w // patch))


@dataclasses.dataclass
class Shared:
  """What every variant of one batch shares (computed once per batch)."""

  images: np.ndarray  # uint8 (B, H, W, 3)
  masks: np.ndarray  # bool (B, H, W)
  x: np.ndarray  # float32 model input
  targets: np.ndarray  # (B,) classes explained
  probabilities: np.ndarray  # (B, K) of the trained model
  indices: np.ndarray  # (B,) the images' places in the set
  saliency: Optional[np.ndarray] = None  # image saliency (full stages)
  random: Optional[list[dict]] = None  # random-order perturbation records


def _merge(records: list[dict], more: list[dict]) -> None:
  for r, m in zip(records, more):
    r.update(m)


def random_order(explainer: Explainer, shared: Shared,
                 protocol: Protocol) -> list[dict]:
  """The random-order perturbation curve of each image, the mean of
  `protocol.random_orders` orders (shared by every variant: the reference a
  map's order must beat)."""
  shape = shared.images.shape[1:3]
  patch = protocol.patch_for(min(shape))
  steps = min(protocol.steps, _region_count(shape, patch))
  runs = []
  for k in range(protocol.random_orders):
    seeds = [(protocol.seed, 7, k, int(i)) for i in shared.indices]
    planes = measures.random_order_planes(shape, patch, seeds)
    runs.append(measures.perturbation(
        explainer.predict_images(), shared.images, planes, shared.targets,
        patch=patch, steps=steps, baseline=protocol.baseline))
  out = []
  for per_order in zip(*runs):
    curve = np.mean([r["curve"] for r in per_order], axis=0)
    out.append({"aopc_random": float(np.mean([r["aopc"] for r in per_order])),
                "random_curve": [float(v) for v in curve]})
  return out


def batch_records(explainer: Explainer, variant: Variant, shared: Shared, *,
                  protocol: Protocol, full: bool, grabcut: bool,
                  layers: Sequence[str]) -> tuple[list[dict], np.ndarray]:
  """Every measure of `variant` on one batch, one record per image.

  Args:
    explainer: the model.
    variant: the map to score.
    shared: the batch.
    protocol: the settings.
    full: every measure (the main stage), or only localisation.
    grabcut: whether OpenCV is there for the segmentation measure.
    layers: the layers to randomise, top first.

  Returns:
    One record per image of the batch (measures only), and the maps'
    (B, H, W) planes.
  """
  start, cpu = time.perf_counter(), time.process_time()
  maps = explainer.maps(variant, shared.x, shared.targets,
                        pad_to=protocol.batch_size)
  plane = maps["plane"]
  map_seconds = time.perf_counter() - start
  shape = plane.shape[1:]
  recs = [{} for _ in range(len(plane))]
  _merge(recs, measures.localisation(
      plane, shared.masks, tolerance=metrics.pointing_tolerance(shape),
      levels=protocol.levels))
  if full:
    _merge(recs, measures.ssim(plane, shared.saliency, maps.get("base")))
    _merge(recs, measures.complexity(plane))
    if grabcut:
      _merge(recs, measures.segmentation(shared.images, plane, shared.masks))
    patch = protocol.patch_for(min(shape))
    _merge(recs, measures.perturbation(
        explainer.predict_images(), shared.images, plane, shared.targets,
        patch=patch, steps=min(protocol.steps, _region_count(shape, patch)),
        baseline=protocol.baseline))
    _merge(recs, shared.random)
    sanity = np.flatnonzero(shared.indices < protocol.sanity_n)
    if sanity.size:
      _sanity(explainer, variant, shared, sanity, recs, protocol, layers,
              plane[sanity])
  seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
  for r in recs:
    r["seconds_map"] = map_seconds / len(recs)
    r["seconds"] = seconds / len(recs)
    r["cpu_seconds"] = cpu / len(recs)
  return recs, plane


def _sanity(explainer: Explainer, variant: Variant, shared: Shared,
            rows: np.ndarray, recs: list[dict], protocol: Protocol,
            layers: Sequence[str], planes: np.ndarray) -> None:
  """Class sensitivity and randomisation for the images `rows` (whose
  trained-model maps are `planes`)."""

  def explain(xs, targets, salt, params=None):
    return explainer.maps(variant, xs, targets, params=params,
                          salt=salt)["plane"]

  x, t = shared.x[rows], shared.targets[rows]
  sens = measures.class_sensitivity(explain, x, shared.probabilities[rows])
  rand = measures.randomization(explain, explainer.variables, x, t, layers,
                                seed=protocol.seed, planes=planes)
  for k, i in enumerate(rows):
    recs[i].update(sens[k])
    recs[i].update(rand[k])
