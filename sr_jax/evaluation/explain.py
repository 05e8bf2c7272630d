"""Maps of a batch, for every variant, as HxW planes the measures take.

Every method's map (shaped like the input) is reduced to one plane the same
way, the channel sum of |map| (the SR paper's reduction, `sr_jax.maps.lrp_map`
before its min-max): signs are dropped for every method alike, because a
gradient's sign is no evidence for or against a pixel. The SR map is the
context-aware saliency of the map's relevance image (`sr_jax.sr`), already a
plane in [0, 1]. Each variant's map runs in one jitted step per batch shape
(`sr_jax.sr.attribute`, compiled once per method and options; a short last
batch is padded to the full size so that it compiles nothing new), and a
method's map is computed once per batch for both its own row and its SR
map's.
"""

from __future__ import annotations

import dataclasses
import functools
import zlib
from typing import Any, Callable, Optional

import jax
import numpy as np

from sr_jax import saliency
from sr_jax import sr as sr_lib
from sr_jax.core import backward as core
from sr_jax.core.models import as_function
from sr_jax.evaluation.variants import Variant
from sr_jax.models.preprocess import normalize
from sr_jax.models.registry import get_arch

Planes = np.ndarray  # float64 (B, H, W)


def relevance_plane(relevance: Any) -> Planes:
  """(B, H, W, C) maps as (B, H, W) planes: the channel sum of |map|."""
  return np.abs(np.asarray(relevance, np.float64)).sum(-1)


@functools.partial(jax.jit, static_argnames=("fn",))
def _probabilities(fn: Any, params: Any, x: jax.Array) -> jax.Array:
  return jax.nn.softmax(fn(params, x), axis=-1)


@dataclasses.dataclass
class Explainer:
  """A loaded model and the means to explain batches with any variant.

  Attributes:
    model, variables: the classifier.
    arch: its architecture name (preprocessing, class count).
    seed: the seed of the random map's draws.
    saliency_options: options of `sr_jax.saliency.context_aware` for SR maps
      and image saliency (the SR default: the crop's own size).
  """

  model: Any
  variables: Any
  arch: str
  seed: int = 0
  saliency_options: Optional[dict[str, Any]] = None

  def __post_init__(self):
    self._fn, _ = as_function(self.model, self.variables)
    self._configs: dict[str, sr_lib.SRConfig] = {}
    self._memo: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
    self._memo_x: Optional[np.ndarray] = None

  def _config(self, variant: Variant) -> sr_lib.SRConfig:
    """One config per variant, so that its jitted step compiles once."""
    if variant.name not in self._configs:
      method = variant.fn  # the registered function, or one with options
      self._configs[variant.name] = sr_lib.SRConfig.make(
          method=method, method_options=dict(variant.options),
          with_image_saliency=False)
    return self._configs[variant.name]

  def probabilities(self, x: np.ndarray, params: Any = None) -> np.ndarray:
    """Softmax (B, K) of normalized inputs `x`, in float64."""
    p = self.variables if params is None else params
    return np.asarray(_probabilities(self._fn, p, x), np.float64)

  def predict_images(self) -> Callable[[np.ndarray], np.ndarray]:
    """`f(uint8 images) -> (B, K)` probabilities, for perturbation curves."""
    return lambda images: self.probabilities(normalize(images, self.arch))

  def saliency(self, images: np.ndarray) -> np.ndarray:
    """Context-aware saliency of each uint8 (or [0, 1]) image: (B, H, W).

    One image per call: `context_aware` compiles once per image size, where
    `context_aware_batch` would compile once per batch size too (the batch
    runs its images one after the other anyway).
    """
    opts = sr_lib.saliency_options_for(images.shape[1:3],
                                       self.saliency_options)
    return np.stack([np.asarray(saliency.context_aware(im, **opts),
                                np.float64) for im in images])

  def random_planes(self, x: np.ndarray, targets: np.ndarray,
                    salt: int = 0) -> Planes:
    """Uniform noise in [0, 1), the chance map: a draw of its own for every
    image, target and `salt`, the same in every run with the same seed."""
    out = np.empty(x.shape[:3])
    for i, (image, t) in enumerate(zip(np.asarray(x), np.asarray(targets))):
      key = (self.seed, zlib.crc32(image.tobytes()), int(t), int(salt))
      out[i] = np.random.default_rng(key).random(out.shape[1:])
    return out

  def _attribute(self, variant: Variant, x: np.ndarray, targets: np.ndarray,
                 params: Any, pad_to: Optional[int]
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The method's map and relevance image; the trained model's map of a
    method is kept for the batch `x`, so "m" and "sr:m" compute it once."""
    shared = params is None and variant.kind in ("map", "sr")
    key = (variant.method, variant.options, np.asarray(targets).tobytes())
    if shared and self._memo_x is x and key in self._memo:
      return self._memo[key]
    n = len(x)
    xs, ts = np.asarray(x), np.asarray(targets, np.int32)
    if pad_to and n < pad_to:  # repeat the last image: the same shape
      xs = np.concatenate([xs, np.repeat(xs[-1:], pad_to - n, 0)])
      ts = np.concatenate([ts, np.repeat(ts[-1:], pad_to - n)])
    t = core.target_array(ts, len(xs), get_arch(self.arch).num_classes)
    r, _, rel_img = sr_lib.attribute(
        self.model, self.variables if params is None else params, xs, t,
        self._config(variant))
    out = (np.asarray(r)[:n], np.asarray(rel_img)[:n])
    if shared:
      if self._memo_x is not x:
        self._memo, self._memo_x = {}, x
      self._memo[key] = out
    return out

  def maps(self, variant: Variant, x: np.ndarray, targets: np.ndarray, *,
           params: Any = None, salt: int = 0,
           pad_to: Optional[int] = None) -> dict[str, Planes]:
    """The variant's planes for a batch.

    Args:
      variant: what to compute.
      x: normalized float32 (B, H, W, 3) input.
      targets: (B,) int classes to explain.
      params: variables to use instead of the trained ones (randomisation).
      salt: tells the random map's draws apart (randomisation steps).
      pad_to: pad a shorter batch to this size for the method's step.

    Returns:
      {"plane": (B, H, W)} and, for an SR variant, "base": the plane of the
      method's own map (for the SSIM ratio).
    """
    if variant.kind == "random":
      return {"plane": self.random_planes(x, targets, salt)}
    r, rel_img = self._attribute(variant, x, targets, params, pad_to)
    base = relevance_plane(r)
    if variant.kind != "sr":
      return {"plane": base}
    return {"plane": self.saliency(rel_img), "base": base}
