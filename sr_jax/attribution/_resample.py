"""What guided backprop and deconvnet share: their backward rules, and the
resampling fix of strided convolutions (Oramas et al., ICLR 2019, "Visual
Explanation by Interpretation", Sec. 3).

Both methods change only the backward pass of ReLUs; every other activation,
the convolutions and max-pooling keep their ordinary backward. The ordinary
backward of a convolution with stride s inserts s-1 zeros between the
output's cotangents before the transposed convolution, which leaves a
checkerboard of period s in the map. With `resample_strided=True`, a strided
convolution's cotangent is instead resized (nearest neighbour) to the
output size the same convolution has with stride 1 on this layer's own
input, divided by the product of the strides (so that its sum stays about
the same, as zero insertion keeps it), and transposed-convolved with stride
1. Convolutions with stride 1 are unchanged.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp

from sr_jax.core import backward as core
from sr_jax.core.graph import Layer
from sr_jax.core.interpret import Rules

ReluBackward = Callable[[jax.Array, jax.Array], jax.Array]
RESAMPLE = "resample_strided"


def _strided(layer: Layer) -> bool:
  return (layer.kind == "conv" and layer.primitive == "conv_general_dilated"
          and layer.x_arg == 0
          and any(s > 1 for s in layer.eqn_params["window_strides"]))


def _layer_rule(layer: Layer) -> Any:
  return RESAMPLE if _strided(layer) else None


def _conv(layer: Layer, x: jax.Array, kernel: jax.Array,
          strides: tuple[int, ...]) -> jax.Array:
  params = dict(layer.eqn_params, window_strides=tuple(strides))
  return jax.lax.conv_general_dilated_p.bind(x, kernel, **params)


def resampled_transpose(layer: Layer, x: jax.Array,
                        params: Mapping[str, jax.Array],
                        g: jax.Array) -> jax.Array:
  """The input cotangent of strided convolution `layer` from its output
  cotangent `g`: resized to the stride-1 output, then the stride-1
  transposed convolution.

  Raises:
    ValueError: when the layer transposes its output before the bias (its
      cotangent cannot be laid back onto the convolution's output).
  """
  strides = tuple(layer.eqn_params["window_strides"])
  ones = (1,) * len(strides)
  kernel = params["kernel"]
  if "scale" in params:
    g = g * params["scale"].astype(g.dtype)
  raw = jax.eval_shape(functools.partial(_conv, layer, kernel=kernel,
                                         strides=strides), x).shape
  if [d for d in g.shape if d != 1] != [d for d in raw if d != 1]:
    raise ValueError(
        f"`resample_strided` cannot resample convolution `{layer.name}`: its "
        f"output (shape={raw}) is transposed to {g.shape} inside the layer.")
  g = g.reshape(raw)
  stride1 = functools.partial(_conv, layer, kernel=kernel, strides=ones)
  full = jax.eval_shape(stride1, x).shape
  up = jax.image.resize(g, full, "nearest") / math.prod(strides)
  return jax.linear_transpose(stride1, x)(up.astype(x.dtype))[0]


def _apply(rule: Any, layer: Layer, layer_fn: Callable[..., jax.Array],
           x: jax.Array, params: Mapping[str, jax.Array]) -> jax.Array:
  """`layer_fn(x, params)` whose VJP is `resampled_transpose`."""
  del rule

  @jax.custom_vjp
  def f(x, params):
    return layer_fn(x, params)

  def fwd(x, params):
    return layer_fn(x, params), (x, params)

  def bwd(res, g):
    x, params = res
    return (resampled_transpose(layer, x, params, g),
            jax.tree.map(jnp.zeros_like, params))

  f.defvjp(fwd, bwd)
  return f(x, params)


def _activation(relu_backward: ReluBackward
                ) -> Callable[..., jax.Array]:
  def rule(name, x, y, g, vjp):
    del y
    return relu_backward(x, g) if name == "relu" else vjp(g)
  return rule


def rules(relu_backward: ReluBackward, resample_strided: bool) -> Rules:
  """The interpreter rules: `relu_backward(x, g)` at every ReLU (x its
  input, g its output cotangent), and the resampling of strided convolutions
  when asked (cached, so that a method compiles once per option).

  Raises:
    ValueError: when `resample_strided` is not a bool.
  """
  if not isinstance(resample_strided, bool):
    raise ValueError(f"`resample_strided` (={resample_strided!r}) must be "
                     "True or False.")
  return _rules(relu_backward, resample_strided)


@functools.lru_cache(maxsize=None)
def _rules(relu_backward: ReluBackward, resample_strided: bool) -> Rules:
  if resample_strided:
    return Rules(layer=_layer_rule, apply=_apply,
                 activation=_activation(relu_backward), activation_vjp=True)
  return Rules(activation=_activation(relu_backward), activation_vjp=True)


def attribute(relu_backward: ReluBackward, model: Any, variables: Any,
              x: Any, target: Any, resample_strided: bool) -> jax.Array:
  """The map of the method whose ReLUs pass `relu_backward(x, g)`."""
  out = core.run(model, variables, x, target,
                 rules=rules(relu_backward, resample_strided))
  return core.nan_where_invalid(out["grad"], out["valid"])
