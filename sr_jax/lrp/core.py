"""`relevance`: LRP for any JAX classifier, over its traced graph.

The model code stays plain: a linen or NNX module, an equinox module or a
function `f(params, x)`. `sr_jax.core` traces it to a jaxpr and finds its
layers (convolutions and dense layers named by their parameter paths, with
bias and BatchNorm folded in; sums, means and average pooling as parameter-free
"pool" layers); the composite assigns each layer a rule, and the layer is
evaluated through `apply_rule`, a `jax.custom_vjp` over `(x, params)` whose
forward is the layer's ordinary output and whose backward maps output
relevance to input relevance with `jax.vjp` of each modified copy of the
layer (`propagate`); the parameters' cotangent is zero. Residual sums split
relevance in proportion to their two inputs; activations and max-pooling
keep their gradient. One `jax.vjp` with the cotangent `onehot(target) *
logits` then yields the input relevance (Bach et al. 2015; Montavon et al.
2019).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional, Union

import jax
import jax.numpy as jnp

from sr_jax.core import backward as _core
from sr_jax.core.interpret import Rules
from sr_jax.lrp import rules
from sr_jax.lrp.composites import Composite, LayerInfo, RuleLike, get_composite

Array = jax.Array


def propagate(rule: rules.Rule, layer_fn: rules.LayerFn, x: Array,
              params: Any, out: Array, r: Array) -> Array:
  """The relevance of `x` from the relevance `r` of `out = layer_fn(x, params)`.

  Terms that vanish for non-negative input are skipped at run time (a small
  `lax.cond` around each of their convolutions) when `x >= 0` everywhere, as
  after a ReLU: z+ then costs one modified forward and one backward. A
  term's `skip_when(x, out, r)` hint skips it the same way: the generalised
  gamma rule's negative-output terms, before a ReLU where outputs z_j < 0
  carry no relevance, so that it costs what the plain gamma rule costs.
  """
  if rule.zero_bias:
    params = rules.drop_bias(params)
  if not rule.terms:
    return rule.reducer((x,), tuple(rule.gradient_mapper(r, ())))
  nonneg = None
  if any(t.vanishes_for_nonneg_input for t in rule.terms):
    nonneg = _decided(jnp.all(x >= 0))
  inputs, outputs, backward = [], [], []
  for term in rule.terms:
    xi = x if term.input_modifier is None else term.input_modifier(x)
    pi = params if term.param_modifier is None else term.param_modifier(params)
    fn = functools.partial(_call_with, layer_fn, pi)
    skip = nonneg if term.vanishes_for_nonneg_input else None
    if term.skip_when is not None:
      skip = _either(skip, _decided(term.skip_when(x, out, r)))
    if skip is not None:
      zi = _unless(skip, functools.partial(fn, xi), out)
      backward.append(functools.partial(_unless_vjp, skip, fn, xi))
    else:
      zi, vjp = jax.vjp(fn, xi)
      backward.append(lambda g, vjp=vjp: vjp(g)[0])
    if (term.input_modifier is None and term.param_modifier is None
        and not rule.zero_bias):
      zi = out  # the ordinary output: no second forward
    inputs.append(xi)
    outputs.append(zi)
  cotangents = rule.gradient_mapper(r, tuple(outputs))
  grads = tuple(b(g) for b, g in zip(backward, cotangents))
  return rule.reducer(tuple(inputs), grads)


def _decided(flag: Array) -> Any:
  """A scalar bool flag: a Python bool when known now (eager), else traced."""
  return flag if isinstance(flag, jax.core.Tracer) else bool(flag)


def _either(a: Any, b: Any) -> Any:
  """`a or b` for flags that are None (no flag), Python bools or traced."""
  if a is None or a is False or b is True:
    return b
  if b is False or a is True:
    return a
  return jnp.logical_or(a, b)


def _unless(skip: Any, compute: Callable[[], Array], like: Array) -> Array:
  """`compute()`, or zeros shaped like `like` where `skip` (bool or traced)."""
  if skip is True:
    return jnp.zeros_like(like)
  if skip is False:
    return compute()
  return jax.lax.cond(skip, lambda: jnp.zeros_like(like), compute)


def _unless_vjp(skip: Any, fn: Callable[[Array], Array], xi: Array,
                g: Array) -> Array:
  return _unless(skip, lambda: jax.vjp(fn, xi)[1](g)[0], xi)


def _call_with(layer_fn: rules.LayerFn, params: Any, x: Array) -> Array:
  return layer_fn(x, params)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def apply_rule(rule: rules.Rule, layer_fn: rules.LayerFn, x: Array,
               params: Any) -> Array:
  """`layer_fn(x, params)`, whose VJP is `rule`'s relevance propagation.

  Args:
    rule: the LRP rule.
    layer_fn: an affine layer `(x, params) -> z`; hashable (a function).
    x: the layer input.
    params: the layer's parameter tree.

  Returns:
    The ordinary layer output. Its VJP maps output relevance to input
    relevance; the parameters' cotangent is zero.

  Examples:
    >>> dense = lambda x, p: x @ p["kernel"] + p["bias"]
    >>> p = {"kernel": jnp.ones((3, 2)), "bias": jnp.zeros(2)}
    >>> x = jnp.array([[1., 2., 1.]])
    >>> z, vjp = jax.vjp(lambda x: apply_rule(rules.zero(), dense, x, p), x)
    >>> vjp(z)[0]  # LRP-0 of R = z: each input keeps its share
    Array([[2., 4., 2.]], dtype=float32)
  """
  return layer_fn(x, params)


def _apply_fwd(rule, layer_fn, x, params):
  out = layer_fn(x, params)
  return out, (x, params, out)


def _apply_bwd(rule, layer_fn, residuals, r):
  x, params, out = residuals
  r_in = propagate(rule, layer_fn, x, params, out, r)
  return r_in, jax.tree.map(jnp.zeros_like, params)


apply_rule.defvjp(_apply_fwd, _apply_bwd)


def _rule_for(composite: Composite, layer: Any) -> Optional[RuleLike]:
  info = LayerInfo(layer.name, layer.kind, layer.first, layer.primitive,
                   layer.shape)
  rule = composite.rule_for(info)
  if isinstance(rule, rules.KeepGradient):
    return None
  if rule is None and layer.kind in ("conv", "dense"):
    raise ValueError(
        f"No rule of composite `{composite.name}` covers layer "
        f"`{layer.name}` ({layer.kind}, `{layer.primitive}`), which has "
        "parameters. Add an entry for it, e.g. Composite(..., entries=(("
        f"is_type(\"{layer.kind}\"), rules.epsilon()), ...)).")
  return rule


def _channel_axis(layer: Any, x: Array) -> int:
  """The input's channel axis of a convolution (last for dense layers)."""
  if layer.primitive == "conv_general_dilated" and layer.x_arg == 0:
    return layer.eqn_params["dimension_numbers"].lhs_spec[1]
  return x.ndim - 1


def _apply(rule: rules.Rule, layer: Any, layer_fn: rules.LayerFn, x: Array,
           params: Any) -> Array:
  axis = _channel_axis(layer, x)
  if axis != x.ndim - 1:
    # Rules see channels last (z^B's per-channel bounds): an NCHW conv (an
    # equinox model) runs on the moved axis, a linear permutation.
    moved = jnp.moveaxis(x, axis, -1)
    return apply_rule(rule, _channels_last(layer_fn, axis), moved, params)
  y = apply_rule(rule, layer_fn, x, params)
  if not rule.terms and y.shape != x.shape:
    raise ValueError(
        f"Rule `{rule!r}` of layer `{layer.name}` ({layer.kind}) passes "
        f"relevance through, but the layer maps shape {x.shape} to "
        f"{y.shape}; pass-through needs equal shapes.")
  return y


def _channels_last(layer_fn: rules.LayerFn, axis: int) -> rules.LayerFn:
  def fn(x, params):
    return layer_fn(jnp.moveaxis(x, -1, axis), params)
  return fn


def residual_split(eps: float):
  """Splits the relevance of `z = a + b` in proportion to `a` and `b`
  (Montavon et al. 2019; the epsilon rule of a sum)."""
  def split(a, b, z, r):
    g = rules.safe_divide(r, rules.stabilize(z, eps))
    return a * g, b * g
  return split


@functools.lru_cache(maxsize=None)
def lrp_rules(composite: Composite) -> Rules:
  """The interpreter rules of `composite` (cached: one jit per composite)."""
  return Rules(layer=functools.partial(_rule_for, composite), apply=_apply,
               residual=residual_split(composite.residual_eps),
               affine_identity=True)


def relevance(model: Any, variables: Any, x: jax.typing.ArrayLike, *,
              target: Union[None, int, jax.typing.ArrayLike] = None,
              composite: Union[str, Composite] = "epsilon_plus_flat",
              return_logits: bool = False
              ) -> Union[jax.Array, tuple[jax.Array, jax.Array]]:
  """Layer-wise relevance of the input `x` for the `target` logit.

  Relevance starts at the target's logit (`onehot(target) * logits`) and is
  carried back by the composite's rules; with conservative rules and no bias
  it sums to that logit. Jitted: a second call with the same shapes, model
  and (equal) composite does not recompile, whatever the target.

  Args:
    model: a Flax linen Module, a Flax NNX Module, an equinox Module or a
      function `f(params, x) -> logits` (batch, classes), built from
      convolutions, dense layers, sums/means/average pooling, max-pooling,
      elementwise activations and residual sums.
    variables: the linen variables (`params`, and `batch_stats` for
      BatchNorm) or the function's params; None for NNX and equinox.
    x: the input batch, e.g. (N, 224, 224, 3); finite.
    target: None (each example's argmax), an int, or one int per example.
      A target traced by the caller's jit is not checked: out of range, it
      gives NaN relevance for that example.
    composite: a name in `COMPOSITES` or a `Composite`.
    return_logits: also return the logits of the same forward pass.

  Returns:
    The relevance, shaped like `x`; with `return_logits`, `(R, logits)`.

  Raises:
    ValueError: for an invalid target or input, an unknown composite, a
      layer with parameters that the composite does not cover, or a
      primitive without a rule (named in the message).

  Examples:
    >>> import sr_jax
    >>> model, variables = sr_jax.load_model("vgg_tiny")
    >>> x = jnp.ones((2, 32, 32, 3))
    >>> R, logits = relevance(model, variables, x, target=3,
    ...                       composite="epsilon_plus", return_logits=True)
    >>> R.shape, logits.shape
    ((2, 32, 32, 3), (2, 10))
  """
  composite = get_composite(composite)
  out = _core.run(model, variables, x, target, rules=lrp_rules(composite),
                  start=_core.logit_start)
  r = _core.nan_where_invalid(out["grad"], out["valid"])
  return (r, out["logits"]) if return_logits else r
