"""Gradient saliency (Simonyan, Vedaldi, Zisserman 2014) and input x gradient.

`gradient` is d logit_target / d x, one forward and one backward pass of the
model as it is (the empty rule set of the explanation core); the vanilla
saliency map is `abs(g).max(-1)`. `input_times_gradient` is `x * gradient`.
"""

from __future__ import annotations

from typing import Any

import jax
from jax.typing import ArrayLike

from sr_jax.attribution._core import register
from sr_jax.core import backward as core
from sr_jax.core.backward import Target


@register("gradient")
def gradient(model: Any, variables: Any, x: ArrayLike, *,
             target: Target = None) -> jax.Array:
  """The input gradient of the target logit (Simonyan et al. 2014).

  Args:
    model: a linen, NNX or equinox module, or a function `f(params, x)`.
    variables: its variables or params (None for NNX and equinox).
    x: NHWC float input batch.
    target: None (argmax), an int, or one int per example.

  Returns:
    An array of `x.shape`.

  Examples:
    >>> import jax.numpy as jnp
    >>> f = lambda p, x: x.reshape(x.shape[0], -1) @ p
    >>> g = gradient(f, jnp.eye(3), jnp.ones((1, 1, 1, 3)), target=1)
    >>> g.ravel().tolist()
    [0.0, 1.0, 0.0]
  """
  out = core.run(model, variables, x, target)
  return core.nan_where_invalid(out["grad"], out["valid"])


@register("input_x_gradient")
def input_times_gradient(model: Any, variables: Any, x: ArrayLike, *,
                         target: Target = None) -> jax.Array:
  """`x * gradient(x)` (Shrikumar et al. 2016)."""
  out = core.run(model, variables, x, target)
  g = core.nan_where_invalid(out["grad"], out["valid"])
  return core.check_input(x) * g
