"""The mu-lasso of Oramas et al. (ICLR 2019): sparse least squares on an L1
ball, one problem per class, solved together in JAX.

For features X (N, M) and targets Y (N, C) (`Y[:, j] = 1[y = j]`),

    w_j = argmin_w  1/2 ||X w - Y[:, j]||^2   subject to   ||w||_1 <= mu.

The solver is FISTA (Beck & Teboulle 2009) in its projected form: an
`optax.sgd` step of size 1/L on the least-squares gradient (L = ||X||_2^2,
the largest eigenvalue of X^T X, so the step is the usual safe one) from a
Nesterov extrapolation, then the Euclidean projection onto the L1 ball
(`project_l1_ball`, the sort-based algorithm of Duchi, Shalev-Shwartz,
Singer & Chandra, ICML 2008, Fig. 1). The projection soft-thresholds, so the
weights outside the support are exactly zero: the features with non-zero
weight are class j's relevant features.

Stopping is certified: for a convex f over the ball, the Frank-Wolfe gap
`g(w) = <grad f(w), w> + mu ||grad f(w)||_inf` bounds f(w) - f(w*) from
above. The loop stops when the gap of every class is at most `tol` times
f(0) = 1/2 ||Y[:, j]||^2 (default `DEFAULT_TOL`), or after `steps`
iterations (default `DEFAULT_STEPS`); `LassoResult.gap` says where it
stopped. A restart of the momentum whenever the step turns against it
(O'Donoghue & Candes 2015) keeps FISTA fast on the strongly correlated
features of a CNN. In float32 the gap levels off near 1e-5 to 1e-4 of f(0)
for large mu (float64 goes on to 1e-6 and below); on the demo model's
features (400 images, mu = 5 and 20) the float32 and float64 supports are
the same.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.typing import ArrayLike

DEFAULT_STEPS = 10000
DEFAULT_TOL = 1e-5


def project_l1_ball(v: ArrayLike, radius: ArrayLike) -> jax.Array:
  """The Euclidean projection of `v` onto {w : ||w||_1 <= radius}.

  Duchi et al. (2008), Fig. 1: with u = |v| sorted in decreasing order and
  rho the largest j with u_j > (sum_{i<=j} u_i - radius) / j, the projection
  is sign(v) max(|v| - theta, 0) with theta = (sum_{i<=rho} u_i - radius) /
  rho; a `v` inside the ball is returned as it is. Jittable; the last axis is
  the vector (leading axes are a batch).

  Args:
    v: the point(s), (..., M).
    radius: the ball's radius, > 0 (a scalar).

  Returns:
    An array shaped like `v`.

  Examples:
    >>> project_l1_ball(jnp.array([3.0, 1.0]), 2.0).tolist()
    [2.0, 0.0]
    >>> project_l1_ball(jnp.array([0.5, -0.25]), 2.0).tolist()
    [0.5, -0.25]
  """
  v = jnp.asarray(v)
  radius = jnp.asarray(radius, v.dtype)
  a = jnp.abs(v)
  u = -jnp.sort(-a, axis=-1)
  css = jnp.cumsum(u, axis=-1)
  j = jnp.arange(1, v.shape[-1] + 1, dtype=v.dtype)
  rho = jnp.sum(u * j > css - radius, axis=-1, keepdims=True)  # >= 1
  theta = (jnp.take_along_axis(css, rho - 1, axis=-1) - radius) / rho.astype(
      v.dtype)
  inside = jnp.sum(a, axis=-1, keepdims=True) <= radius
  return jnp.where(inside, v, jnp.sign(v) * jnp.maximum(a - theta, 0))


class LassoResult(NamedTuple):
  """What `mu_lasso` returns.

  Attributes:
    weights: (C, M), one row per class; exactly zero off the support.
    steps: iterations run.
    gap: each class's Frank-Wolfe gap at the end, relative to f(0), (C,).
  """

  weights: jax.Array
  steps: jax.Array
  gap: jax.Array


def _gap(x, y, w, mu):
  """Per-class Frank-Wolfe gap of 1/2 ||X w - y||^2 over the ball, (C,)."""
  grad = x.T @ (x @ w - y)
  return jnp.sum(grad * w, axis=0) + mu * jnp.max(jnp.abs(grad), axis=0)


@functools.partial(jax.jit, static_argnames=("steps",))
def _solve(x, y, mu, tol, steps):
  lipschitz = jnp.linalg.norm(x, ord=2) ** 2
  tx = optax.sgd(1.0 / jnp.maximum(lipschitz, jnp.finfo(x.dtype).tiny))
  scale = jnp.maximum(0.5 * jnp.sum(y * y, axis=0), jnp.finfo(x.dtype).tiny)
  project = jax.vmap(project_l1_ball, in_axes=(1, None), out_axes=1)
  w0 = jnp.zeros((x.shape[1], y.shape[1]), x.dtype)

  def gap(w):
    return _gap(x, y, w, mu) / scale

  def cond(state):
    _, _, _, k, g = state
    return (k < steps) & (jnp.max(g) > tol)

  def body(state):
    w, z, t, k, _ = state
    updates, _ = tx.update(x.T @ (x @ z - y), tx.init(z))
    w_next = project(optax.apply_updates(z, updates), mu)
    # Adaptive restart (O'Donoghue & Candes 2015): drop the momentum when
    # the step turns against it.
    restart = jnp.sum((z - w_next) * (w_next - w)) > 0
    t = jnp.where(restart, jnp.ones_like(t), t)
    t_next = 0.5 * (1.0 + jnp.sqrt(1.0 + 4.0 * t * t))
    z = w_next + ((t - 1.0) / t_next) * (w_next - w)
    return w_next, z, t_next, k + 1, gap(w_next)

  one = jnp.ones((), x.dtype)
  w, _, _, k, g = jax.lax.while_loop(
      cond, body, (w0, w0, one, jnp.zeros((), jnp.int32), gap(w0)))
  return w.T, k, g


def mu_lasso(features: ArrayLike, targets: ArrayLike, *, mu: float,
             steps: int = DEFAULT_STEPS, tol: float = DEFAULT_TOL
             ) -> LassoResult:
  """Solves min 1/2 ||X w_j - Y[:, j]||^2 s.t. ||w_j||_1 <= mu for every j.

  Args:
    features: X, (N, M), finite.
    targets: Y, (N, C), or (N,) for one problem.
    mu: the L1 radius, > 0.
    steps: the most FISTA iterations, >= 1.
    tol: stop once every class's Frank-Wolfe gap is <= tol * f(0), > 0.

  Returns:
    A `LassoResult`; `weights` is (C, M) (or (1, M) for 1-D `targets`).

  Raises:
    ValueError: for mu <= 0, bad `steps` or `tol`, or mismatched shapes.

  Examples:
    >>> x = jnp.eye(3)
    >>> r = mu_lasso(x, jnp.array([3.0, 1.0, 0.0]), mu=2.0)
    >>> np.round(np.asarray(r.weights), 4).tolist()
    [[2.0, 0.0, 0.0]]
  """
  check_mu(mu)
  if (not isinstance(steps, (int, np.integer)) or isinstance(steps, bool)
      or steps < 1):
    raise ValueError(f"`steps` (={steps!r}) must be an integer >= 1.")
  if not (isinstance(tol, (int, float)) and 0 < tol < np.inf):
    raise ValueError(f"`tol` (={tol!r}) must be a number > 0.")
  x = jnp.asarray(features)
  y = jnp.asarray(targets, x.dtype)
  y = y[:, None] if y.ndim == 1 else y
  if x.ndim != 2 or y.ndim != 2 or y.shape[0] != x.shape[0]:
    raise ValueError(
        f"`features` (shape={x.shape}) must be (N, M) and `targets` (shape="
        f"{jnp.shape(targets)}) (N, C) or (N,), with the same N.")
  if not bool(jnp.all(jnp.isfinite(x))):
    raise ValueError("`features` must be finite.")
  w, k, g = _solve(x, y, jnp.asarray(mu, x.dtype), jnp.asarray(tol, x.dtype),
                   int(steps))
  return LassoResult(w, k, g)


def check_mu(mu: float) -> None:
  """Raises a ValueError unless `mu` is a finite number > 0."""
  if (isinstance(mu, bool) or not isinstance(mu, (int, float, np.number))
      or not 0 < mu < np.inf):
    raise ValueError(f"`mu` (={mu!r}) must be a finite number > 0 (the L1 "
                     "radius of each class's weights).")
