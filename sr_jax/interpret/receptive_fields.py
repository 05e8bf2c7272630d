"""Receptive fields of feature maps, and the "average visualisation" of a
relevant feature (Oramas et al., ICLR 2019, §3.2).

**Receptive fields, measured.** The receptive field of unit o of a feature
map, along each spatial axis, is the input range `offset + o * jump ...
offset + o * jump + size - 1` (`ReceptiveField`; it may reach past the image,
where convolutions pad). It is measured as the support of the input gradient
of single units rather than derived from the layer hyper-parameters, so it
holds for any model the core traces (any padding, dilation, pooling or
residual path):

* every activation's backward passes the cotangent through unchanged, so no
  ReLU gates the support;
* the gradient is taken for a small batch of random inputs and summed over
  all channels of the unit, so max-pooling, whose gradient goes to one
  position of each window, routes it to every position of the window in
  some example or channel;
* units 0, 1, n-2 and n-1 along each axis give the jump (`hi_1 - hi_0`)
  and the two far edges (`hi_0`, the first unit's last input row, and
  `lo_{n-1}`, the last unit's first), which the image border clips last.

A field that reaches past both image borders from every unit is clipped to
the image. The test checks the measurement against the closed-form
recurrence for the demo model's 3x3 convolutions and 2x2 poolings.

**Average visualisation.** For each relevant feature, the `top` images with
the largest feature value, and in each the receptive field of the filter's
most active unit; their mean is the picture of what the feature responds
to. Pixels of a field outside the image take the dataset's mean colour.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from sr_jax.core.backward import model_graph
from sr_jax.core.interpret import Rules, evaluate
from sr_jax.core.models import ModelFn, as_function
from sr_jax.interpret.features import RelevantFeatures, check_layers

DEFAULT_TOP = 16
PROBES = 8  # random inputs of the measurement


class ReceptiveField(NamedTuple):
  """Unit o covers input rows (cols) `offset + o * jump` to `offset + o *
  jump + size - 1`, per spatial axis (height, width)."""

  size: tuple[int, int]
  jump: tuple[int, int]
  offset: tuple[int, int]

  def window(self, unit: tuple[int, int]) -> tuple[tuple[int, int], ...]:
    """`((top, bottom + 1), (left, right + 1))` of `unit`'s field."""
    return tuple((o + u * j, o + u * j + s) for s, j, o, u in zip(
        self.size, self.jump, self.offset, unit))


def _pass_through(name, x, y, g):
  del name, x, y
  return g


@functools.partial(jax.jit, static_argnames=("fn", "layers", "units"))
def _supports(fn: ModelFn, params: Any, x: jax.Array, layers: tuple[str, ...],
              units: tuple[tuple[tuple[int, int], ...], ...]
              ) -> list[tuple[jax.Array, jax.Array]]:
  """Per layer and unit, which input rows and columns its gradient reaches:
  (units, H) and (units, W) booleans per layer."""
  graph = model_graph(fn, params, x)
  rules = Rules(activation=_pass_through)
  values, vjp = jax.vjp(lambda v: tuple(evaluate(
      graph, params, v, rules=rules, taps=layers)[1][n] for n in layers), x)
  out = []
  for k, (name, picks) in enumerate(zip(layers, units)):
    tap = graph.taps[name]
    cots = []
    for unit in picks:
      idx = [slice(None)] * values[k].ndim
      for axis, u in zip(tap.spatial_axes, unit):
        idx[axis] = u
      cots.append(jnp.zeros_like(values[k]).at[tuple(idx)].set(1.0))
    stacked = tuple(jnp.stack(cots) if j == k else jnp.zeros(
        (len(picks), *v.shape), v.dtype) for j, v in enumerate(values))
    g = jnp.abs(jax.vmap(vjp)(stacked)[0]) > 0  # (units, P, H, W, C)
    out.append((jnp.any(g, axis=(1, 3, 4)), jnp.any(g, axis=(1, 2, 4))))
  return out


def _extent(support: np.ndarray) -> tuple[int, int]:
  idx = np.flatnonzero(support)
  if idx.size == 0:
    raise ValueError("A unit's gradient reaches no input pixel; its "
                     "receptive field cannot be measured.")
  return int(idx[0]), int(idx[-1])


def receptive_fields(model: Any, variables: Any, shape: Sequence[int],
                     layers: Optional[Sequence[str]] = None, *,
                     key: Optional[jax.Array] = None
                     ) -> dict[str, ReceptiveField]:
  """The measured receptive field of each layer's units (module docstring).

  Args:
    model: a linen, NNX or equinox module, or a function `f(params, x)`.
    variables: its variables or params (None for NNX and equinox).
    shape: one input's (H, W, C).
    layers: tap names with two spatial axes; None: every conv and ReLU.
    key: PRNG key of the random probe inputs (default `PRNGKey(0)`).

  Returns:
    `{layer: ReceptiveField}`.

  Examples:
    >>> import sr_jax
    >>> model, v = sr_jax.load_model("demo_vgg_tiny")
    >>> receptive_fields(model, v, (32, 32, 3), ["features_3"])
    {'features_3': ReceptiveField(size=(8, 8), jump=(2, 2), offset=(-3, -3))}
  """
  fn, params = as_function(model, variables)
  key = jax.random.PRNGKey(0) if key is None else key
  x = jax.random.normal(key, (PROBES, *shape))
  taps = model_graph(fn, params, jax.ShapeDtypeStruct(x.shape, x.dtype)).taps
  layers = check_layers(layers, taps)
  # An activation has the field of the layer it follows.
  measured = tuple(n for n in layers if n.rpartition("/")[0] not in taps)
  picks, counts = [], []
  for name in measured:
    tap = taps[name]
    n = [tap.shape[a] for a in tap.spatial_axes]
    mid = [k // 2 for k in n]
    along = [[0, min(1, k - 1), max(k - 2, 0), k - 1] for k in n]
    picks.append(tuple((p, mid[1]) for p in along[0]) + tuple(
        (mid[0], p) for p in along[1]))
    counts.append(n)
  supports = _supports(fn, params, x, measured, tuple(picks))
  found = {}
  for name, n, (rows, cols) in zip(measured, counts, supports):
    rows, cols = np.asarray(rows), np.asarray(cols)
    size, jump, offset = [], [], []
    for axis, sup in enumerate((rows[:4], cols[4:])):
      (_, hi0), (_, hi1), (lo2, _), (lo3, hi3) = (_extent(s) for s in sup)
      length, count = shape[axis], n[axis]
      if count == 1:
        j, off, s = length, lo3, hi3 - lo3 + 1
      else:
        j = hi1 - hi0 if hi1 < length - 1 else (
            lo3 - lo2 if lo2 > 0 else max(1, length // count))
        off = lo3 - (count - 1) * j
        s = hi0 - off + 1
      size.append(int(s))
      jump.append(int(j))
      offset.append(int(off))
    found[name] = ReceptiveField(tuple(size), tuple(jump), tuple(offset))
  out = {}
  for name in layers:
    base = name.rpartition("/")[0]
    out[name] = found[name] if name in found else (
        found.get(base) or receptive_fields(fn, params, shape, [base],
                                            key=key)[base])
  return out


def patch(image: np.ndarray, field: ReceptiveField, unit: tuple[int, int],
          fill: np.ndarray) -> np.ndarray:
  """`unit`'s receptive field cut from `image` (H, W, C) as float64; pixels
  outside the image are `fill`."""
  (t, b), (l, r) = field.window(unit)
  out = np.broadcast_to(np.asarray(fill, np.float64),
                        (b - t, r - l, image.shape[-1])).copy()
  h, w = image.shape[:2]
  ct, cb, cl, cr = max(t, 0), min(b, h), max(l, 0), min(r, w)
  if ct < cb and cl < cr:
    out[ct - t:cb - t, cl - l:cr - l] = image[ct:cb, cl:cr]
  return out


class FeatureView(NamedTuple):
  """One relevant feature's average visualisation.

  Attributes:
    index: the feature's index in the feature vector.
    layer: its layer.
    channel: its filter.
    weight: its weight for the class.
    image: the mean of its top patches, uint8 (size_h, size_w, 3).
    sources: the dataset indices of the images averaged.
  """

  index: int
  layer: str
  channel: int
  weight: float
  image: np.ndarray
  sources: np.ndarray


def average_visualisations(
    fitted: RelevantFeatures, model: Any, variables: Any, images: ArrayLike,
    feats: ArrayLike, peaks: ArrayLike, *, top: int = DEFAULT_TOP,
    max_features: Optional[int] = None, positive: bool = True,
    fields: Optional[dict[str, ReceptiveField]] = None,
) -> list[list[FeatureView]]:
  """Each class's relevant features, each as its mean top patch.

  Args:
    fitted: the selection (`fit`).
    model: the model it was fitted on.
    variables: its variables or params.
    images: the dataset as displayable uint8 (N, H, W, 3), the inputs of
      `feats` before normalization.
    feats: `features(model, variables, x, layers=fitted.layers)`, (N, M).
    peaks: the matching peak positions (`features(..., peaks=True)`).
    top: the number of images averaged per feature (>= 1).
    max_features: the most features per class (None: all).
    positive: only the features of positive weight (the evidence for the
      class), else every non-zero one.
    fields: precomputed `receptive_fields`.

  Returns:
    Per class, its `FeatureView`s, largest weight first.

  Raises:
    ValueError: for a bad `top` or mismatched shapes.
  """
  images = np.asarray(images)
  feats, peaks = np.asarray(feats), np.asarray(peaks)
  if (images.ndim != 4 or feats.shape != peaks.shape
      or feats.shape != (images.shape[0], fitted.weights.shape[1])):
    raise ValueError(
        f"`images` (shape={images.shape}), `feats` (shape={feats.shape}) and "
        f"`peaks` (shape={peaks.shape}) must be (N, H, W, 3), (N, "
        f"{fitted.weights.shape[1]}) and (N, {fitted.weights.shape[1]}).")
  if not isinstance(top, (int, np.integer)) or top < 1:
    raise ValueError(f"`top` (={top!r}) must be an integer >= 1.")
  if fields is None:
    fields = receptive_fields(model, variables, images.shape[1:],
                              fitted.layers)
  fn, params = as_function(model, variables)
  taps = model_graph(fn, params, jax.ShapeDtypeStruct(
      (1, *images.shape[1:]), jnp.float32)).taps
  fill = images.reshape(-1, images.shape[-1]).mean(axis=0)
  views = []
  for c in range(fitted.num_classes):
    idx = fitted.relevant(c)
    if positive:
      idx = idx[fitted.weights[c, idx] > 0]
    row = []
    for f in idx[:max_features]:
      layer, channel = fitted.describe(int(f))
      width = taps[layer].shape[taps[layer].spatial_axes[1]]
      best = np.argsort(-feats[:, f], kind="stable")[:top]
      cut = [patch(images[i], fields[layer], divmod(int(peaks[i, f]), width),
                   fill) for i in best]
      mean = np.clip(np.round(np.mean(cut, axis=0)), 0, 255).astype(np.uint8)
      row.append(FeatureView(int(f), layer, channel,
                             float(fitted.weights[c, f]), mean, best))
    views.append(row)
  return views
