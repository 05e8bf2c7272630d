"""Sanity checks: does the map depend on the model and on the class?

References:
  Adebayo, Gilmer, Muelly, Goodfellow, Hardt, Kim (2018), "Sanity checks for
  saliency maps" (cascading and independent model randomisation, from the
  top layer down; Spearman rank correlation of |map| and SSIM to the
  original). Rebuffi, Fong, Ji, Vedaldi (2020), "There and back again:
  revisiting backpropagation saliency methods" (class sensitivity: Spearman
  correlation of the maps for the most and the least probable class).
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from sr_jax.core.models import leaf_paths, path_names
from sr_jax.metrics._common import Score, as_key, as_map, check_plane, per_image
from sr_jax.metrics.ssim import check_ssim_size, map_ssim

__all__ = ["ClassSensitivity", "ModelRandomization", "RandomizationSimilarity",
           "class_sensitivity", "extreme_classes", "gaussian_like",
           "model_randomization", "randomization_similarity"]

MODES = ("cascading", "independent")


class RandomizationSimilarity(NamedTuple):
  """How alike two maps are (Adebayo et al. 2018); high = the method ignored
  what changed between them."""
  spearman: Score  # rank correlation of the pixel values
  ssim: Score  # SSIM of the min-max normalized maps


class ModelRandomization(NamedTuple):
  """Similarity to the original map as layers are randomised, top first."""
  mode: str  # "cascading" or "independent"
  layers: tuple[str, ...]  # step k randomises layers[k] (and, cascading, above)
  spearman: np.ndarray  # (L,) Spearman of |map| at each step, or (L, N)
  ssim: np.ndarray  # (L,) SSIM of the min-max scaled |map|, or (L, N)


class ClassSensitivity(NamedTuple):
  """Spearman of the maps for the most and least probable class."""
  mean: float  # over images; lower = more class-sensitive
  std: float  # over images (population std, ddof=0)
  per_image: np.ndarray  # (N,)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
  """Spearman's rank correlation of two maps (average ranks; 0 if constant)."""
  ra, rb = stats.rankdata(a.ravel()), stats.rankdata(b.ravel())
  ra, rb = ra - ra.mean(), rb - rb.mean()
  denom = math.sqrt(float((ra * ra).sum() * (rb * rb).sum()))
  return 0.0 if denom == 0 else float((ra * rb).sum() / denom)


def _pair(map_a, map_b, name_a: str, name_b: str):
  a = as_map(map_a, name_a)
  b = as_map(map_b, name_b)
  check_plane(a, name_a)
  if b.shape != a.shape:
    raise ValueError(
        f"`{name_b}` (shape={b.shape}) must have the shape of `{name_a}` "
        f"(={a.shape}).")
  return a, b


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
    min-max normalized maps (data_range=1, 7x7 window). Floats, or (N,) arrays
    for a batch.
  """
  a, b = _pair(map_a, map_b, "map_a", "map_b")
  check_ssim_size(a.shape[-2:], "map_a")
  if absolute:
    a, b = np.abs(a), np.abs(b)
  return RandomizationSimilarity(
      per_image(spearman, a, b), per_image(map_ssim, a, b))


def gaussian_like(key: jax.Array, leaf: jax.Array) -> jax.Array:
  """A fresh draw for `leaf`: Gaussian with the leaf's own mean and std.

  The default re-initialisation of `model_randomization`: same shape, dtype
  and scale as the trained leaf, no trained structure. A constant leaf (a
  zero bias, a BatchNorm scale of ones) stays constant.
  """
  leaf = jnp.asarray(leaf)
  noise = jax.random.normal(key, leaf.shape, leaf.dtype)
  return leaf.mean() + leaf.std() * noise


def _layer_leaves(params: Any, layers: Sequence[str]) -> list[list[int]]:
  """For each layer name, the indices of the leaves it holds.

  A leaf's path is its key names joined by "/" (dict keys, attributes,
  indices). Layer "a/b" holds the leaves under a/b, with or without one
  leading collection such as linen's "params".
  """
  names = [list(path_names(path)) for path in leaf_paths(params)]
  out = []
  for layer in layers:
    want = layer.split("/")
    hits = [i for i, n in enumerate(names)
            if any(n[s:s + len(want)] == want and s + len(want) < len(n)
                   for s in (0, 1))]
    if not hits:
      known = sorted({"/".join(n[:-1]) for n in names if len(n) > 1})
      raise ValueError(
          f"`layers` entry {layer!r} holds no leaf of `params`; its layers "
          f"are: {', '.join(known)}.")
    out.append(hits)
  return out


def _plane(m: Any, x: Any) -> np.ndarray:
  """An explanation as HxW or NxHxW; a channels axis matching x's is summed
  as |map| (the SR paper's reduction)."""
  a = as_map(m, "explain(params, x)")
  if a.ndim >= 3 and a.shape == np.shape(x):
    a = np.abs(a).sum(-1)
  check_plane(a, "explain(params, x)")
  return a


def model_randomization(
    explain: Callable[[Any, Any], jax.typing.ArrayLike],
    params: Any,
    x: Any,
    layers: Sequence[str],
    *,
    key: jax.typing.ArrayLike | int,
    mode: str = "cascading",
    reinit: Callable[[jax.Array, jax.Array], jax.Array] = gaussian_like,
) -> ModelRandomization:
  """The model-randomisation sanity check (Adebayo et al. 2018).

  Layers are randomised from the top down. "cascading": step k randomises
  layers[0..k] together; "independent": step k randomises layers[k] alone,
  the others trained. At each step the map is recomputed and compared with
  the trained model's map: Spearman rank correlation of |map| and SSIM of
  the min-max scaled |map| (7x7 window). A method that passes loses its
  similarity as the layers are randomised; one that ignores the model keeps
  it at 1.

  Layer k's leaves are drawn with `reinit(jax.random.fold_in(k_key, j),
  leaf)`, where k_key is the k-th of `jax.random.split(key, len(layers))`
  and j the leaf's index in `params`' flattening, so both modes use the same
  draw for a layer.

  Args:
    explain: `explain(params, x) -> map`, any method on any model; the map
      is HxW or NxHxW, or shaped like `x` with channels last (then summed as
      |map| over channels).
    params: the trained parameters, a pytree.
    x: the input, passed to `explain` as it is.
    layers: layer names, top (output) first; a name is a "/"-joined path
      prefix of leaves, e.g. "dense_1" or "features/28".
    key: a JAX PRNG key (or an int seed) for the draws.
    mode: "cascading" or "independent".
    reinit: `reinit(key, leaf) -> new leaf`; by default `gaussian_like`.

  Returns:
    `ModelRandomization(mode, layers, spearman, ssim)`, one entry per step.

  Raises:
    ValueError: for an unknown `mode`, an empty `layers`, a layer that holds
      no leaf, a bad `key`, or maps that are not finite planes of 7+ pixels.

  Examples:
    >>> import jax.numpy as jnp
    >>> explain = lambda p, x: p["top"]["w"] * x  # a map made of the weights
    >>> params = {"top": {"w": jnp.arange(64.0).reshape(8, 8)}}
    >>> out = model_randomization(explain, params, jnp.ones((8, 8)), ["top"],
    ...                           key=0)
    >>> out.layers, out.spearman.shape, bool(out.spearman[0] < 0.5)
    (('top',), (1,), True)
  """
  if mode not in MODES:
    raise ValueError(f"`mode` (={mode!r}) must be one of {MODES}.")
  if isinstance(layers, str) or not len(layers):
    raise ValueError(
        f"`layers` (={layers!r}) must be a non-empty sequence of layer names.")
  rng = as_key(key)
  members = _layer_leaves(params, layers)
  leaves, treedef = jax.tree_util.tree_flatten(params)
  original = _plane(explain(params, x), x)
  check_ssim_size(original.shape[-2:], "explain(params, x)")
  fresh = {}
  for k_key, hits in zip(jax.random.split(rng, len(layers)), members):
    for j in hits:
      fresh.setdefault(j, reinit(jax.random.fold_in(k_key, j), leaves[j]))
  rho, sim = [], []
  for k in range(len(layers)):
    chosen = members[:k + 1] if mode == "cascading" else [members[k]]
    swap = {j for hits in chosen for j in hits}
    new = [fresh[j] if j in swap else leaf for j, leaf in enumerate(leaves)]
    m = _plane(explain(jax.tree_util.tree_unflatten(treedef, new), x), x)
    s = randomization_similarity(original, m, absolute=True)
    rho.append(s.spearman)
    sim.append(s.ssim)
  return ModelRandomization(mode, tuple(layers), np.array(rho, np.float64),
                            np.array(sim, np.float64))


def extreme_classes(
    probabilities: jax.typing.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
  """The most and the least probable class of each row of (N, K) scores."""
  p = as_map(probabilities, "probabilities")
  if p.ndim != 2 or p.shape[1] < 2:
    raise ValueError(f"`probabilities` (shape={p.shape}) must be (N, K), "
                     "K >= 2.")
  return p.argmax(1), p.argmin(1)


def class_sensitivity(
    maps_most: jax.typing.ArrayLike,
    maps_least: jax.typing.ArrayLike,
    *,
    absolute: bool = False,
) -> ClassSensitivity:
  """Class sensitivity (Rebuffi et al. 2020): Spearman's rank correlation of
  each image's map for its most probable class with its map for its least
  probable class (`extreme_classes`), mean and std over images.

  A class-sensitive method explains the two classes differently: low
  correlation. A method blind to the class (e.g. an edge detector) scores 1.

  Args:
    maps_most: NxHxW maps for each image's most probable class (an HxW map
      is one image).
    maps_least: the maps for the least probable class, same shape.
    absolute: correlate |map| instead of the signed maps.

  Returns:
    `ClassSensitivity(mean, std, per_image)`; std with ddof=0.

  Raises:
    ValueError: for maps that are not finite planes of the same shape.

  Examples:
    >>> a = np.arange(16.0).reshape(1, 4, 4)
    >>> class_sensitivity(a, -a).mean  # opposite orders
    -1.0
  """
  a, b = _pair(maps_most, maps_least, "maps_most", "maps_least")
  if a.ndim == 2:
    a, b = a[None], b[None]
  if absolute:
    a, b = np.abs(a), np.abs(b)
  rho = np.array([spearman(u, v) for u, v in zip(a, b)], np.float64)
  return ClassSensitivity(float(rho.mean()), float(rho.std()), rho)
