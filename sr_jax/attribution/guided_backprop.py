"""Guided backpropagation (Springenberg et al., ICLR 2015 workshop).

The gradient with every ReLU's backward replaced: where the gradient passes
R * 1[x > 0] (R the backward signal, x the ReLU's input), guided backprop
passes R * 1[x > 0] * 1[R > 0]. Other activations, the convolutions and
max-pooling keep their ordinary backward, so on a network without ReLUs it
is the gradient. `resample_strided=True` adds the resampling fix of strided
convolutions (Oramas et al. 2019, see `_resample`). One forward and one
backward pass.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from sr_jax.attribution import _resample
from sr_jax.attribution._core import register
from sr_jax.core.backward import Target


def guided_relu(x: jax.Array, r: jax.Array) -> jax.Array:
  """R * 1[x > 0] * 1[R > 0]."""
  return jnp.where((x > 0) & (r > 0), r, jnp.zeros_like(r))


@register("guided_backprop")
def guided_backprop(model: Any, variables: Any, x: ArrayLike, *,
                    target: Target = None,
                    resample_strided: bool = False) -> jax.Array:
  """Guided backprop of the target logit.

  Args:
    model: a linen, NNX or equinox module, or a function `f(params, x)`.
    variables: its variables or params (None for NNX and equinox).
    x: NHWC float input batch.
    target: None (argmax), an int, or one int per example.
    resample_strided: resize the backward signal of strided convolutions
      instead of inserting zeros (Oramas et al. 2019), against the
      checkerboard they leave.

  Returns:
    An array of `x.shape`.

  Raises:
    ValueError: for an invalid target, input or option.

  Examples:
    >>> import sr_jax
    >>> model, variables = sr_jax.load_model("vgg_tiny")
    >>> x = jax.numpy.ones((1, 32, 32, 3))
    >>> guided_backprop(model, variables, x, target=0).shape
    (1, 32, 32, 3)
  """
  return _resample.attribute(guided_relu, model, variables, x, target,
                             resample_strided)
