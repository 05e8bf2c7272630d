"""Deconvnet (Zeiler & Fergus, ECCV 2014) as a backward pass.

The gradient with every ReLU's backward replaced: where the gradient passes
R * 1[x > 0] (R the backward signal, x the ReLU's input), the deconvnet
passes R * 1[R > 0], a ReLU of the backward signal itself. Other
activations, the convolutions and max-pooling (the "switches") keep their
ordinary backward. `resample_strided=True` adds the resampling fix of
strided convolutions (Oramas et al. 2019, see `_resample`). One forward and
one backward pass.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from sr_jax.attribution import _resample
from sr_jax.attribution._core import register
from sr_jax.core.backward import Target


def deconv_relu(x: jax.Array, r: jax.Array) -> jax.Array:
  """R * 1[R > 0], whatever the forward input."""
  del x
  return jnp.maximum(r, 0)


@register("deconvnet")
def deconvnet(model: Any, variables: Any, x: ArrayLike, *,
              target: Target = None,
              resample_strided: bool = False) -> jax.Array:
  """The deconvnet reconstruction of the target logit.

  Args:
    model: a linen, NNX or equinox module, or a function `f(params, x)`.
    variables: its variables or params (None for NNX and equinox).
    x: NHWC float input batch.
    target: None (argmax), an int, or one int per example.
    resample_strided: resize the backward signal of strided convolutions
      instead of inserting zeros (Oramas et al. 2019).

  Returns:
    An array of `x.shape`.

  Raises:
    ValueError: for an invalid target, input or option.
  """
  return _resample.attribute(deconv_relu, model, variables, x, target,
                             resample_strided)
