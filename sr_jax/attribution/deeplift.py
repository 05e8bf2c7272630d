"""DeepLIFT with the Rescale rule (Shrikumar, Greenside, Kundaje, ICML 2017).

One forward pass over the concatenation [x, x0] on the batch axis gives
every node's value for the input and for the baseline; the backward pass
then carries multipliers m = dy/dx (differences to the baseline) instead of
gradients:

* at an elementwise activation, m = (y(x) - y(x0)) / (x - x0) (Rescale),
  and the ordinary derivative where |x - x0| < eps;
* at a max-pooling, the "cross-max" rule (Captum's `maxpool`): with
  out = pool(x), ref = pool(x0) and top = max(out, ref), g (top - ref) goes
  to the input's maximum of each window and g (out - top) to the
  baseline's, their sum divided by x - x0 (the ordinary gradient where
  |x - x0| < eps). It sums to g (out - ref) over each window, so the
  multipliers stay complete through the pooling;
* linear nodes (convolutions, dense layers, sums, average pooling,
  residual sums) keep their backward, which is their multiplier.

The attribution is m * (x - x0), the multiplier at the input times the
difference, and it sums to f(x) - f(x0) at the target logit ("completeness")
whenever every nonlinear node is an elementwise activation or a max-pooling.
Other nonlinear nodes (a product of two activations, a division) keep their
gradient, and the sum is then approximate. The baseline is zeros by default.

Where Captum (`captum.attr.DeepLift`) differs: it back-propagates from the
input half of the output only, so down to the first max-pooling the
baseline half carries no gradient and its term g (out - top) is dropped at
that pooling; its attributions then do not sum to f(x) - f(x0) wherever the
baseline's pooled activation exceeds the input's. Here both terms use the
input's multiplier g everywhere. Without max-pooling the two agree.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from sr_jax.attribution._core import register
from sr_jax.core import backward as core
from sr_jax.core.backward import Target
from sr_jax.core.graph import Layer
from sr_jax.core.interpret import Rules
from sr_jax.core.models import as_function

EPS = 1e-10  # Captum's default


def _halves(v: jax.Array) -> tuple[jax.Array, jax.Array]:
  n = v.shape[0] // 2
  return v[:n], v[n:]


def _input_half(m: jax.Array) -> jax.Array:
  """`m` for the input half, zeros for the baseline half."""
  return jnp.concatenate([m, jnp.zeros_like(m)])


def _quotient(num: jax.Array, dx: jax.Array, fallback: jax.Array,
              eps: float) -> jax.Array:
  """num / dx, and `fallback` where |dx| < eps."""
  small = jnp.abs(dx) < eps
  return jnp.where(small, fallback, num / jnp.where(small, jnp.ones_like(dx),
                                                     dx))


def _rescale(eps: float) -> Callable[..., jax.Array]:
  def rule(name, x, y, g, vjp):
    del name
    (x1, x0), (y1, y0), gx = _halves(x), _halves(y), _halves(g)[0]
    plain = _halves(vjp(_input_half(gx)))[0]
    return _input_half(_quotient(gx * (y1 - y0), x1 - x0, plain, eps))
  return rule


def _max_pool_rule(layer: Layer) -> Optional[str]:
  return "cross_max" if layer.kind == "max_pool" else None


def _cross_max(eps: float) -> Callable[..., jax.Array]:
  def apply(rule, layer, layer_fn, x, params):
    del rule, layer

    @jax.custom_vjp
    def f(x, params):
      return layer_fn(x, params)

    def fwd(x, params):
      z = layer_fn(x, params)
      return z, (x, params, z)

    def bwd(res, g):
      x, params, z = res
      (out, ref), gx = _halves(z), _halves(g)[0]
      top = jnp.maximum(out, ref)
      vjp = jax.vjp(lambda v: layer_fn(v, params), x)[1]
      routed = _halves(vjp(jnp.concatenate([gx * (top - ref),
                                            gx * (out - top)]))[0])
      plain = _halves(vjp(_input_half(gx))[0])[0]
      x1, x0 = _halves(x)
      m = _quotient(routed[0] + routed[1], x1 - x0, plain, eps)
      return _input_half(m), jax.tree.map(jnp.zeros_like, params)

    f.defvjp(fwd, bwd)
    return f(x, params)
  return apply


@functools.lru_cache(maxsize=None)
def rules(eps: float) -> Rules:
  """The interpreter rules of DeepLIFT-Rescale (cached per `eps`)."""
  return Rules(layer=_max_pool_rule, apply=_cross_max(eps),
               activation=_rescale(eps), activation_vjp=True)


def _input_half_onehot(logits: jax.Array, t: jax.Array) -> jax.Array:
  """Cotangent one at the input half's target logits, zero for the
  baseline half."""
  return _input_half(core.onehot_start(_halves(logits)[0], _halves(t)[0]))


def multipliers(fn: Any, eps: float, params: Any, x: jax.Array,
                x0: jax.Array, t: jax.Array) -> dict[str, jax.Array]:
  """One DeepLIFT pass of `fn` (traceable): "attribution" m * (x - x0),
  "logits" of x, "baseline_logits" of x0 and "valid", per example."""
  out = core.backward(fn, params, jnp.concatenate([x, x0]),
                      jnp.concatenate([t, t]), rules=rules(eps),
                      start=_input_half_onehot)
  n = x.shape[0]
  return {"attribution": out["grad"][:n] * (x - x0),
          "logits": out["logits"][:n], "baseline_logits": out["logits"][n:],
          "valid": out["valid"][:n]}


def check_eps(eps: Any) -> float:
  """`eps` as a float; a ValueError unless it is a number >= 0."""
  if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not (
      eps >= 0):
    raise ValueError(f"`eps` (={eps!r}) must be a number >= 0.")
  return float(eps)


@functools.partial(jax.jit, static_argnums=(0, 1))
def deeplift_pass(fn: Any, eps: float, params: Any, x: jax.Array,
                  x0: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
  """`multipliers`, jitted (static `fn`, `eps`): the attribution (NaN where
  a traced target is out of range) and the logits of x."""
  out = multipliers(fn, eps, params, x, x0, t)
  return core.nan_where_invalid(out["attribution"], out["valid"]), out[
      "logits"]


@register("deeplift")
def deeplift(model: Any, variables: Any, x: ArrayLike, *,
             target: Target = None, baseline: Optional[ArrayLike] = None,
             eps: float = EPS) -> jax.Array:
  """DeepLIFT-Rescale attributions of the target logit.

  Args:
    model: a linen, NNX or equinox module, or a function `f(params, x)`.
    variables: its variables or params (None for NNX and equinox).
    x: NHWC float input batch.
    target: None (argmax of f(x)), an int, or one int per example.
    baseline: the reference input x0, broadcastable to `x` (default zeros).
    eps: below this |x - x0| at a node, its ordinary derivative is used.

  Returns:
    m * (x - x0), an array of `x.shape`; per example it sums to
    f(x)[t] - f(x0)[t] (see the module docstring for when exactly).

  Raises:
    ValueError: for an invalid target, input, baseline or eps.

  Examples:
    >>> f = lambda p, x: jax.nn.relu(x.reshape(x.shape[0], -1) @ p)
    >>> x = jnp.array([[[[1.0, 2.0]]]])
    >>> deeplift(f, jnp.ones((2, 1)), x, target=0).ravel().tolist()
    [1.0, 2.0]
  """
  eps = check_eps(eps)
  fn, params = as_function(model, variables)
  x = core.check_input(x)
  x0 = baseline_like(baseline, x)
  t = core.target_array(target, x.shape[0])
  m, logits = deeplift_pass(fn, eps, params, x, x0, t)
  core.check_range(target, t, logits.shape[-1])
  return m


def baseline_like(baseline: Optional[ArrayLike], x: jax.Array,
                  name: str = "baseline") -> jax.Array:
  """`baseline` broadcast to `x` (zeros for None), checked finite."""
  if baseline is None:
    return jnp.zeros_like(x)
  b = jnp.asarray(baseline)
  try:
    b = jnp.broadcast_to(b, x.shape)
  except ValueError as err:
    raise ValueError(f"`{name}` (shape={b.shape}) must broadcast to `x` "
                     f"(shape={x.shape}).") from err
  return core.check_input(b.astype(x.dtype), name)
