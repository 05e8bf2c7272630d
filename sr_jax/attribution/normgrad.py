"""NormGrad and the linear approximation (Rebuffi et al., CVPR 2020).

Each is an Extract & Aggregate recipe (`_extract`) over a layer's
activation x and the target logit's gradient g at it, at every location u:

* "normgrad": ||x_u|| * ||g_u||, the norm of the gradient of a virtual 1x1
  identity convolution's weights inserted at the layer;
* "normgrad_selective": ||max(x_u * g_u, 0)||;
* "normgrad_conv": ||g_out,u|| * ||unfold(x_in)_u||, the norm of the
  gradient of a convolution's own kernel at u: g_out is the gradient at the
  convolution's output, unfold(x_in) its input patch with the layer's own
  kernel size, stride, padding and dilation;
* "linear_approx": sum_c x * g (Kindermans et al.'s first-order term at a
  layer).

Each costs one forward and one backward pass; the layer-resolution map is
upsampled bilinearly to the input and broadcast over its channels.
"""

from __future__ import annotations

from typing import Any, Optional

import jax
from jax.typing import ArrayLike

from sr_jax.attribution import _extract
from sr_jax.attribution._core import register
from sr_jax.core.backward import Target

NORMGRAD = _extract.Recipe(_extract.outer, _extract.l2_norm)
SELECTIVE = _extract.Recipe(_extract.positive_product, _extract.l2_norm)
CONV = _extract.Recipe(_extract.outer, _extract.l2_norm, conv_input=True)
LINEAR = _extract.Recipe(_extract.product, _extract.channel_sum)

_ARGS = """
  Args:
    model: a linen, NNX or equinox module, or a function `f(params, x)`.
    variables: its variables or params (None for NNX and equinox).
    x: NHWC float input batch.
    target: None (argmax), an int, or one int per example.
    layer: {layer}

  Returns:
    The map upsampled to the input, an array of `x.shape`.

  Raises:
    ValueError: for an unknown layer (the message lists the known ones), a
      layer without two spatial axes, or an invalid target.
"""
_ANY_LAYER = ("a named value with two spatial axes; None: the activation of\n"
              "      the last convolution (`sr_jax.attribution.layers` lists "
              "the names).")


@register("normgrad")
def normgrad(model: Any, variables: Any, x: ArrayLike, *,
             target: Target = None, layer: Optional[str] = None
             ) -> jax.Array:
  """NormGrad: ||x_u|| * ||g_u|| at `layer`."""
  return _extract.one_layer(NORMGRAD, model, variables, x, target, layer)


@register("normgrad_selective")
def normgrad_selective(model: Any, variables: Any, x: ArrayLike, *,
                       target: Target = None, layer: Optional[str] = None
                       ) -> jax.Array:
  """Selective NormGrad: ||max(x_u * g_u, 0)|| at `layer`."""
  return _extract.one_layer(SELECTIVE, model, variables, x, target, layer)


@register("normgrad_conv")
def normgrad_conv(model: Any, variables: Any, x: ArrayLike, *,
                  target: Target = None, layer: Optional[str] = None
                  ) -> jax.Array:
  """NormGrad of a convolution's kernel: ||g_out,u|| * ||unfold(x_in)_u||.

  The layer's BatchNorm, when one follows it, is folded into it: g_out is
  the gradient after the folded affine chain.
  """
  return _extract.one_layer(CONV, model, variables, x, target, layer)


@register("linear_approx")
def linear_approx(model: Any, variables: Any, x: ArrayLike, *,
                  target: Target = None, layer: Optional[str] = None
                  ) -> jax.Array:
  """The linear approximation sum_c x * g at `layer`."""
  return _extract.one_layer(LINEAR, model, variables, x, target, layer)


for _fn, _recipe, _layer in (
    (normgrad, NORMGRAD, _ANY_LAYER), (normgrad_selective, SELECTIVE,
                                       _ANY_LAYER),
    (normgrad_conv, CONV, "the name of a convolution layer; None: the last "
     "one."), (linear_approx, LINEAR, _ANY_LAYER)):
  _fn.recipe = _recipe
  _fn.__doc__ += _ARGS.format(layer=_layer)
