"""Integrated Gradients (Sundararajan, Taly, Yan 2017).

(x - x0) times the gradient averaged along the straight path from a baseline
x0, with the trapezoid rule; with enough steps it sums to f(x) - f(x0)
("completeness").
"""

from __future__ import annotations

import functools
from typing import Any, Optional

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from sr_jax.attribution._core import register
from sr_jax.attribution.smoothgrad import fixed_target
from sr_jax.core import backward as core
from sr_jax.core.backward import Target
from sr_jax.core.models import as_function


@register("integrated_gradients")
def integrated_gradients(model: Any, variables: Any, x: ArrayLike, *,
                         baseline: Optional[ArrayLike] = None,
                         target: Target = None, steps: int = 64) -> jax.Array:
  """Integrated Gradients with the trapezoid rule over `steps` intervals.

  Args:
    model, variables, x, target: as for `gradient`; the target is fixed from
      the input.
    baseline: reference input broadcastable to `x` (default: zeros).
    steps: number of path intervals (>= 1); `steps + 1` gradients are taken.

  Returns:
    Attributions of `x.shape` whose per-example sum approaches
    f(x)[t] - f(baseline)[t] as `steps` grows.
  """
  if not isinstance(steps, int) or steps < 1:
    raise ValueError(f"`steps` (={steps}) must be >= 1 (an int).")
  x = core.check_input(x)
  x0 = jnp.zeros_like(x) if baseline is None else jnp.broadcast_to(
      jnp.asarray(baseline, x.dtype), x.shape)
  t = fixed_target(model, variables, x, target)
  fn, params = as_function(model, variables)
  return _integrate(fn, steps, params, x, x0, t)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _integrate(fn, steps, params, x, x0, t):
  alphas = jnp.linspace(0.0, 1.0, steps + 1, dtype=x.dtype)
  weights = jnp.full((steps + 1,), 1.0, x.dtype).at[jnp.array([0, steps])].set(
      0.5) / steps

  def one(alpha):
    return core.backward(fn, params, x0 + alpha * (x - x0), t)["grad"]

  grads = jax.lax.map(one, alphas)
  return (x - x0) * jnp.tensordot(weights, grads, axes=1)
