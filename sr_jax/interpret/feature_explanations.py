"""Explanations from relevant features (Oramas et al., ICLR 2019, §3.3), as
the attribution method "relevant_features".

For an image x with features f(x) (`sr_jax.interpret.features.pool`) and
class c (the prediction, or `target`), each relevant feature k of class c is
weighed by `f_k(x) * w_{c,k} / sum_k w_{c,k}`, and the `top` (3) largest
positive ones are kept. Each is explained by seeding its filter's own
activation map (the cotangent is the map itself at that filter, zero at
every other filter and layer) and back-projecting it to the input with
guided backprop or deconvnet, with the resampling fix of strided
convolutions on (`sr_jax.attribution._resample`; it changes nothing on a
network without strided convolutions, such as the demo model). A
feature's heatmap is the L2 norm over colour of the positive part of its
back-projection, min-max normalized per image (`sr_jax.maps.minmax`), and
the explanation is the pixel-wise maximum of the heatmaps (zero for a slot
without a positive feature). The map is broadcast over the input's
channels, so it is shaped like x.

The selection is fitted first (`sr_jax.interpret.fit`);
`register_relevant_features(fitted)` then adds the method to
`sr_jax.attribution.METHODS` with `fitted` as its default option.
"""

from __future__ import annotations

import functools
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from sr_jax import maps
from sr_jax.attribution import _resample
from sr_jax.attribution._core import Method, register
from sr_jax.attribution.deconvnet import deconv_relu
from sr_jax.attribution.guided_backprop import guided_relu
from sr_jax.core import backward as core
from sr_jax.core.interpret import Rules, evaluate
from sr_jax.core.models import ModelFn
from sr_jax.interpret.features import RelevantFeatures, pool

BACKPROPS = {"guided_backprop": guided_relu, "deconvnet": deconv_relu}
DEFAULT_TOP = 3


def _layer_ids(fitted: RelevantFeatures) -> tuple[np.ndarray, np.ndarray]:
  """Each feature's layer index and channel."""
  layer = np.repeat(np.arange(len(fitted.channels)), fitted.channels)
  starts = np.cumsum((0,) + fitted.channels[:-1])
  return layer.astype(np.int32), (np.arange(layer.size) - starts[layer]
                                  ).astype(np.int32)


def _check_layers(graph, layers: tuple[str, ...], channels: tuple[int, ...],
                  num_classes: int) -> None:
  """At trace time: the model has the fitted layers and classes."""
  for name, count in zip(layers, channels):
    if name not in graph.taps:
      raise ValueError(
          f"`fitted` was fitted on layer {name!r}, which the model lacks; "
          f"its layers are: {', '.join(graph.taps)}.")
    tap = graph.taps[name]
    if tap.feature_axis is None or tap.shape[tap.feature_axis] != count:
      raise ValueError(f"`fitted` has {count} channels for layer {name!r}; "
                       f"the model's has shape {tap.shape}.")
  out = graph.avals[graph.out_key].shape if isinstance(graph.out_key,
                                                       int) else ()
  if len(out) != 2 or out[-1] != num_classes:
    raise ValueError(f"The model's output (shape={tuple(out)}) must be "
                     f"logits of the {num_classes} classes `fitted` has "
                     "weights for.")


@functools.partial(jax.jit, static_argnames=("fn", "layers", "channels",
                                             "rules", "top"))
def _explain(fn: ModelFn, params: Any, x: jax.Array, t: jax.Array,
             weights: jax.Array, layer_of: jax.Array, channel_of: jax.Array,
             *, layers: tuple[str, ...], channels: tuple[int, ...],
             rules: Rules, top: int):
  graph = core.model_graph(fn, params, x)
  _check_layers(graph, layers, channels, weights.shape[0])
  taps = [graph.taps[n] for n in layers]

  def forward(v):
    logits, acts = evaluate(graph, params, v, rules=rules, taps=layers)
    return tuple(acts[n] for n in layers), logits

  acts, vjp, logits = jax.vjp(forward, x, has_aux=True)
  target, valid = core.resolve(t, logits)
  w = weights[jnp.clip(target, 0, weights.shape[0] - 1)]    # (B, M)
  total = jnp.sum(w, axis=1, keepdims=True)
  score = pool(acts, taps) * w / jnp.where(total != 0, total,
                                           jnp.ones_like(total))
  best, feature = jax.lax.top_k(score, top)                  # (B, top)

  def seed(slot):
    cots = []
    for k, (a, tap) in enumerate(zip(acts, taps)):
      mine = layer_of[feature[:, slot]] == jnp.asarray(k, layer_of.dtype)
      chan = jnp.arange(tap.shape[tap.feature_axis],
                        dtype=channel_of.dtype) == channel_of[
          feature[:, slot]][:, None]                         # (B, C)
      shape = [1] * a.ndim
      shape[0], shape[tap.feature_axis] = a.shape[0], -1
      mask = (chan & mine[:, None]).reshape(shape)
      cots.append(jnp.where(mask, a, jnp.zeros_like(a)))
    g = vjp(tuple(cots))[0]
    heat = jnp.sqrt(jnp.sum(jnp.maximum(g, 0) ** 2, axis=-1))  # (B, H, W)
    heat = maps.minmax(heat, axis=(1, 2))
    return jnp.where((best[:, slot] > 0)[:, None, None], heat,
                     jnp.zeros_like(heat))

  m = functools.reduce(jnp.maximum, [seed(s) for s in range(top)])
  m = jnp.broadcast_to(m[..., None], x.shape).astype(x.dtype)
  return core.nan_where_invalid(m, valid), feature, best


def explain(model: Any, variables: Any, x: ArrayLike, *,
            fitted: RelevantFeatures, target: core.Target = None,
            top: int = DEFAULT_TOP, backprop: str = "guided_backprop",
            resample_strided: bool = True, return_features: bool = False):
  """The explanation of each example from its class's relevant features.

  Args:
    model: the model `fitted` was fitted on (any kind the core accepts).
    variables: its variables or params (None for NNX and equinox).
    x: normalized NHWC input batch.
    fitted: the selection (`sr_jax.interpret.fit` or `load`).
    target: None (each example's predicted class), an int, or one int per
      example: the class c whose relevant features explain it.
    top: how many of the most contributing features to back-project.
    backprop: "guided_backprop" or "deconvnet".
    resample_strided: the resampling fix of strided convolutions.
    return_features: also return the chosen features and their scores.

  Returns:
    The map, shaped like `x`, in [0, 1]; with `return_features`, also the
    (batch, top) feature indices and their scores (a score <= 0 marks a
    slot left empty).

  Raises:
    ValueError: for a bad target, input or option, or a `fitted` whose
      layers the model lacks.
  """
  if not isinstance(fitted, RelevantFeatures):
    raise ValueError(
        f"`fitted` (={type(fitted).__name__}) must be a RelevantFeatures "
        "from `sr_jax.interpret.fit` or `load`.")
  if backprop not in BACKPROPS:
    raise ValueError(f"`backprop` (={backprop!r}) must be one of "
                     f"{', '.join(map(repr, BACKPROPS))}.")
  if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or not (
      1 <= top <= fitted.weights.shape[1]):
    raise ValueError(f"`top` (={top!r}) must be an integer in [1, "
                     f"{fitted.weights.shape[1]}].")
  fn, params, x, t = core.prepare(model, variables, x, target)
  core.check_range(target, t, fitted.num_classes)
  layer_of, channel_of = _layer_ids(fitted)
  rules = _resample.rules(BACKPROPS[backprop], resample_strided)
  m, feature, best = _explain(
      fn, params, x, t, jnp.asarray(fitted.weights, x.dtype),
      jnp.asarray(layer_of), jnp.asarray(channel_of), layers=fitted.layers,
      channels=fitted.channels, rules=rules, top=int(top))
  return (m, feature, best) if return_features else m


def relevant_features(model: Any, variables: Any, x: ArrayLike, *,
                      target: core.Target = None,
                      fitted: Optional[RelevantFeatures] = None,
                      top: int = DEFAULT_TOP,
                      backprop: str = "guided_backprop",
                      resample_strided: bool = True) -> jax.Array:
  """The "relevant_features" attribution method (see `explain`).

  Raises:
    ValueError: without `fitted` (fit one and register it first), or for
      bad options.
  """
  if fitted is None:
    raise ValueError(
        "`fitted` (=None): the relevant-feature method needs a fitted "
        "selection; call `sr_jax.interpret.fit(...)` and register it with "
        "`register_relevant_features(fitted)` (or pass `fitted=`).")
  return explain(model, variables, x, fitted=fitted, target=target, top=top,
                 backprop=backprop, resample_strided=resample_strided)


def register_relevant_features(fitted: RelevantFeatures, *,
                               name: str = "relevant_features") -> Method:
  """Registers `relevant_features` with `fitted` as its default selection
  under `name` in `sr_jax.attribution.METHODS`; returns the method.

  Examples:
    >>> method = register_relevant_features(fitted)  # doctest: +SKIP
    >>> sr_jax.attribution.get_method("relevant_features")(model, v, x)  # doctest: +SKIP
  """
  if not isinstance(fitted, RelevantFeatures):
    raise ValueError(
        f"`fitted` (={type(fitted).__name__}) must be a RelevantFeatures.")

  def method(model: Any, variables: Any, x: ArrayLike, *,
             target: core.Target = None, **options: Any) -> jax.Array:
    options.setdefault("fitted", fitted)
    return relevant_features(model, variables, x, target=target, **options)

  method.__name__ = name
  method.__doc__ = relevant_features.__doc__
  return register(name)(method)
