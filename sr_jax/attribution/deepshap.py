"""Deep SHAP (Lundberg & Lee, NeurIPS 2017): DeepLIFT averaged over a
background set of baselines, the comparison method of the SR paper's
Figure 5.

`deepshap` returns the attributions, the mean over the background of
DeepLIFT's m * (x - b); per example they sum to f(x)[t] - E_b f(b)[t].
`expected_value` gives E_b f(b), the mean logits over the background (the
SHAP "base value"). Without a background the baseline is one black image
(zeros), and Deep SHAP equals DeepLIFT with its default baseline; pass a
few typical images (e.g. ten from the data set) for the SHAP estimate.
"""

from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from sr_jax.attribution._core import register
from sr_jax.attribution.deeplift import EPS, check_eps, deeplift_pass
from sr_jax.core import backward as core
from sr_jax.core.backward import Target
from sr_jax.core.models import as_function


def check_background(background: Optional[ArrayLike], like: jax.Array
                     ) -> jax.Array:
  """`background` as a (B, ...) float stack shaped like the examples of
  `like`, B >= 1 (None: one black image).

  Raises:
    ValueError: for an empty set, another example shape, or non-finite
      values.
  """
  if background is None:
    return jnp.zeros((1,) + like.shape[1:], like.dtype)
  b = jnp.asarray(background)
  if b.ndim != like.ndim or b.shape[1:] != like.shape[1:] or b.shape[0] < 1:
    raise ValueError(
        f"`background` (shape={b.shape}) must be a non-empty stack of "
        f"baselines shaped like one example: (B, {', '.join(map(str, like.shape[1:]))}) "
        "with B >= 1.")
  return core.check_input(b.astype(like.dtype), "background")


@register("deepshap")
def deepshap(model: Any, variables: Any, x: ArrayLike, *,
             target: Target = None, background: Optional[ArrayLike] = None,
             eps: float = EPS) -> jax.Array:
  """Deep SHAP attributions of the target logit.

  Args:
    model: a linen, NNX or equinox module, or a function `f(params, x)`.
    variables: its variables or params (None for NNX and equinox).
    x: NHWC float input batch.
    target: None (argmax of f(x)), an int, or one int per example.
    background: baselines (B, H, W, C), B >= 1; None: one black image.
      Each costs one DeepLIFT pass (one after the other).
    eps: DeepLIFT's threshold on |x - x0| (see `deeplift`).

  Returns:
    The mean DeepLIFT attribution over the background, an array of
    `x.shape`.

  Raises:
    ValueError: for an empty or mis-shaped background, an invalid target,
      input or eps.
  """
  eps = check_eps(eps)
  fn, params = as_function(model, variables)
  x = core.check_input(x)
  bg = check_background(background, x)
  t = core.target_array(target, x.shape[0])
  def one(i):
    return deeplift_pass(fn, eps, params, x, jnp.broadcast_to(
        jax.lax.dynamic_slice_in_dim(bg, i, 1), x.shape), t)

  if isinstance(x, jax.core.Tracer) or isinstance(bg, jax.core.Tracer):
    # Inside the caller's `jit`: one loop body, not one copy of the DeepLIFT
    # program per baseline (which made compile time and memory grow with
    # the background).
    m, logits = one(0)
    total = jax.lax.fori_loop(1, bg.shape[0], lambda i, acc: acc + one(i)[0],
                              m)
  else:
    # Eagerly, one jitted DeepLIFT pass per baseline (compiled once): on
    # XLA:CPU a `lax.map` over the baselines ran several times slower.
    total = None
    for i in range(bg.shape[0]):
      m, logits = one(i)
      total = m if total is None else total + m
  core.check_range(target, t, logits.shape[-1])
  return total / bg.shape[0]


def expected_value(model: Any, variables: Any,
                   background: ArrayLike) -> jax.Array:
  """E_b f(b): the mean logits over the background set, shape (classes,).

  Deep SHAP's attributions of an example sum to f(x)[t] minus this at t.

  Raises:
    ValueError: for an empty or non-finite background.

  Examples:
    >>> f = lambda p, x: x.reshape(x.shape[0], -1) @ p
    >>> expected_value(f, jnp.eye(2), jnp.array([[[[1., 0.]]], [[[3., 2.]]]]))
    Array([2., 1.], dtype=float32)
  """
  b = jnp.asarray(background)
  if b.ndim < 2 or b.shape[0] < 1:
    raise ValueError(f"`background` (shape={b.shape}) must be a non-empty "
                     "stack of baselines (B, H, W, C) with B >= 1.")
  fn, params = as_function(model, variables)
  return core.logits(fn, params, core.check_input(b, "background")).mean(0)
