"""Gradient saliency (Simonyan et al. 2014) and two methods built on it.

* `gradient`: d logit_target / d x (Simonyan, Vedaldi, Zisserman 2014).
* `input_times_gradient`: x * gradient.
* `smoothgrad`: the gradient averaged over noisy copies of the input
  (Smilkov et al. 2017), with an explicit PRNG key.
* `integrated_gradients`: (x - x0) times the gradient averaged along the
  straight path from a baseline x0 (Sundararajan et al. 2017); with enough
  steps it sums to f(x) - f(x0) ("completeness").

All take a Flax `model` and its `variables`, an NHWC batch `x` and a target
that is None (each example's argmax), an int, or one int per example. They are
pure and jittable; the model is applied to the whole batch at once.
"""

from __future__ import annotations

from typing import Any, Optional, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

Target = Union[None, int, ArrayLike]


def resolve_target(logits: jax.Array, target: Target) -> jax.Array:
  """Per-example target indices (int32, shape (N,)) for `logits` (N, C)."""
  n, c = logits.shape
  if target is None:
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)
  if not isinstance(target, jax.core.Tracer):
    t_np = np.asarray(target)
    if not np.issubdtype(t_np.dtype, np.integer):
      raise ValueError(
          f"`target` (dtype={t_np.dtype}) must be None, an int or ints.")
    if t_np.ndim not in (0, 1) or (t_np.ndim == 1 and t_np.shape != (n,)):
      raise ValueError(
          f"`target` (shape={t_np.shape}) must be a scalar or have one entry "
          f"per example ({n},).")
    if t_np.size and (t_np.min() < 0 or t_np.max() >= c):
      raise ValueError(f"`target` (={t_np.tolist()}) must lie in [0, {c}).")
  t = jnp.asarray(target)
  if t.ndim == 0:
    t = jnp.full((n,), t)
  return t.astype(jnp.int32)


def _target_logit_grad(model: nn.Module, variables: Any, x: jax.Array,
                       target: Target) -> tuple[jax.Array, jax.Array]:
  """(d sum_n logit_n[t_n] / dx, logits) in one forward and one backward."""
  logits, vjp = jax.vjp(lambda inp: model.apply(variables, inp), x)
  t = resolve_target(logits, target)
  (g,) = vjp(jax.nn.one_hot(t, logits.shape[-1], dtype=logits.dtype))
  return g, logits


def gradient(model: nn.Module, variables: Any, x: ArrayLike, *,
             target: Target = None) -> jax.Array:
  """The input gradient of the target logit (Simonyan et al. 2014).

  Args:
    model: a Flax module mapping NHWC input to logits.
    variables: its variables.
    x: NHWC float input batch.
    target: None (argmax), an int, or one int per example.

  Returns:
    An array of `x.shape`; the vanilla saliency map is `abs(g).max(-1)`.
  """
  x = jnp.asarray(x)
  return _target_logit_grad(model, variables, x, target)[0]


def input_times_gradient(model: nn.Module, variables: Any, x: ArrayLike, *,
                         target: Target = None) -> jax.Array:
  """`x * gradient(x)`."""
  x = jnp.asarray(x)
  return x * _target_logit_grad(model, variables, x, target)[0]


def smoothgrad(model: nn.Module, variables: Any, x: ArrayLike, *,
               key: jax.Array, target: Target = None, samples: int = 25,
               noise_level: float = 0.15) -> jax.Array:
  """SmoothGrad: the gradient averaged over `samples` noisy inputs.

  Args:
    model, variables, x, target: as for `gradient`. The target is fixed from
      the clean input so every noisy copy explains the same class.
    key: PRNG key for the noise.
    samples: number of noisy copies (>= 1).
    noise_level: noise standard deviation as a fraction of each example's
      value range (max - min), as in Smilkov et al. 2017.

  Returns:
    The mean gradient, an array of `x.shape`.
  """
  if samples < 1:
    raise ValueError(f"`samples` (={samples}) must be >= 1.")
  if noise_level < 0:
    raise ValueError(f"`noise_level` (={noise_level}) must be >= 0.")
  x = jnp.asarray(x)
  t = resolve_target(model.apply(variables, x), target)
  axes = tuple(range(1, x.ndim))
  sigma = noise_level * (x.max(axis=axes, keepdims=True) -
                         x.min(axis=axes, keepdims=True))

  def one(k):
    noisy = x + sigma * jax.random.normal(k, x.shape, x.dtype)
    return _target_logit_grad(model, variables, noisy, t)[0]

  return jax.lax.map(one, jax.random.split(key, samples)).mean(axis=0)


def integrated_gradients(model: nn.Module, variables: Any, x: ArrayLike, *,
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
  if steps < 1:
    raise ValueError(f"`steps` (={steps}) must be >= 1.")
  x = jnp.asarray(x)
  x0 = jnp.zeros_like(x) if baseline is None else jnp.broadcast_to(
      jnp.asarray(baseline, x.dtype), x.shape)
  t = resolve_target(model.apply(variables, x), target)
  alphas = jnp.linspace(0.0, 1.0, steps + 1, dtype=x.dtype)
  weights = jnp.full((steps + 1,), 1.0, x.dtype).at[jnp.array([0, steps])].set(
      0.5) / steps

  def one(alpha):
    return _target_logit_grad(model, variables, x0 + alpha * (x - x0), t)[0]

  grads = jax.lax.map(one, alphas)
  return (x - x0) * jnp.tensordot(weights, grads, axes=1)
