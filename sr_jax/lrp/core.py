"""`relevance`: LRP for any Flax linen classifier, by method interception.

The model code stays plain Flax. `flax.linen.intercept_methods` sees every
module call; the composite assigns each layer a rule, and the call is
replaced by `apply_rule`, a `jax.custom_vjp` over `(x, params)` whose forward
is the layer's ordinary output and whose backward maps output relevance to
input relevance with `jax.vjp` of each modified copy of the layer
(`propagate`); the parameters' cotangent is zero. One `jax.vjp` of the
intercepted `model.apply` with the cotangent `onehot(target) * logits` then
yields the input relevance (Bach et al. 2015; Montavon et al. 2019).
"""

from __future__ import annotations

import contextvars
import functools
from typing import Any, Callable, Mapping, Optional, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from sr_jax.lrp import canonize, rules
from sr_jax.lrp.composites import Composite, LayerInfo, get_composite

# Set while a layer function runs its own (unbound) module: not intercepted.
_BYPASS = contextvars.ContextVar("sr_jax_lrp_bypass", default=False)
Array = jax.Array


def propagate(rule: rules.Rule, layer_fn: rules.LayerFn, x: Array,
              params: Any, out: Array, r: Array) -> Array:
  """The relevance of `x` from the relevance `r` of `out = layer_fn(x, params)`.

  Terms that vanish for non-negative input are skipped at run time (a small
  `lax.cond` around each of their convolutions) when `x >= 0` everywhere, as
  after a ReLU: z+ then costs one modified forward and one backward.
  """
  if rule.zero_bias:
    params = rules.drop_bias(params)
  if not rule.terms:
    return rule.reducer((x,), tuple(rule.gradient_mapper(r, ())))
  skip = None
  if any(t.vanishes_for_nonneg_input for t in rule.terms):
    skip = jnp.all(x >= 0)
    if not isinstance(skip, jax.core.Tracer):
      skip = bool(skip)  # eager: decide here, nothing to compile
  inputs, outputs, backward = [], [], []
  for term in rule.terms:
    xi = x if term.input_modifier is None else term.input_modifier(x)
    pi = params if term.param_modifier is None else term.param_modifier(params)
    fn = functools.partial(_call_with, layer_fn, pi)
    if term.vanishes_for_nonneg_input:
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


def _own_variables(module: nn.Module) -> Optional[dict[str, dict[str, Any]]]:
  """The module's own variables by collection, or None for a pure container."""
  own, has_children = {}, False
  for collection, tree in module.variables.items():
    leaves = {k: v for k, v in tree.items() if not isinstance(v, Mapping)}
    has_children |= len(leaves) < len(tree)
    if leaves:
      own[collection] = leaves
  return None if has_children and not own else own


def _layer_fn(module: nn.Module, others: Mapping[str, Any], rest: tuple,
              kwargs: Mapping[str, Any], **overrides: Any):
  """`(x, params) -> module(x, *rest)` run on an unbound copy of `module`."""
  unbound = module.clone(parent=None, **overrides)

  def layer_fn(x: jax.Array, params: Any) -> jax.Array:
    token = _BYPASS.set(True)
    try:
      return unbound.apply({"params": params, **others}, x, *rest, **kwargs)
    finally:
      _BYPASS.reset(token)
  return layer_fn


class _Interceptor:
  """Replaces each layer call by its rule's custom_vjp (one per trace)."""

  def __init__(self, composite: Composite, variables: Mapping[str, Any],
               folds: Mapping[tuple[str, ...], canonize.Fold]):
    self.composite = composite
    self.variables = variables
    self.folds = folds
    self.folded = {f.path for f in folds.values()}
    self.seen_first = False

  def __call__(self, next_fun, args, kwargs, context):
    if _BYPASS.get() or context.method_name != "__call__":
      return next_fun(*args, **kwargs)
    module = context.module
    own = _own_variables(module)
    if own is None:
      return next_fun(*args, **kwargs)
    path = tuple(module.path)
    if path in self.folded:
      return args[0]  # folded into the layer before: identity
    layer = LayerInfo(module, "/".join(path), bool(own) and not self.seen_first)
    self.seen_first |= bool(own)
    rule = self.composite.rule_for(layer)
    if rule is None and own:
      raise ValueError(_no_rule_message(layer, self.composite, own,
                                        isinstance(module, nn.BatchNorm)))
    if rule is None or isinstance(rule, rules.Gradient):
      return next_fun(*args, **kwargs)
    if not args:
      raise ValueError(
          f"Layer `{layer.path}` ({type(module).__name__}) was called "
          "without a positional input; LRP rules need the input as the first "
          "argument.")
    x, rest = args[0], args[1:]
    if not own:
      y = next_fun(*args, **kwargs)
      if y is x:
        return y  # an identity call (e.g. pooling to its own size)
    params = own.get("params", {})
    others = {c: v for c, v in own.items() if c != "params"}
    if path in self.folds:
      params = canonize.fold_params(params, self.variables, self.folds[path])
      fn = _layer_fn(module, others, rest, kwargs, use_bias=True)
    else:
      fn = _layer_fn(module, others, rest, kwargs)
    y = apply_rule(rule, fn, x, params)
    if not rule.terms and y.shape != x.shape:
      raise ValueError(
          f"Rule `{rule!r}` of layer `{layer.path}` ({type(module).__name__}) "
          f"passes relevance through, but the layer maps shape {x.shape} to "
          f"{y.shape}; pass-through needs equal shapes.")
    return y


def _no_rule_message(layer: LayerInfo, composite: Composite,
                     own: Mapping[str, Any], batchnorm: bool) -> str:
  names = sorted(f"{c}/{k}" for c, t in own.items() for k in t)
  hint = ""
  if batchnorm:
    hint = (" It could not be folded into a preceding Conv/Dense (its input "
            "is not such a layer's output, or it does not use running "
            "averages).")
  return (
      f"No rule of composite `{composite.name}` covers layer `{layer.path}` "
      f"({type(layer.module).__name__}), which has parameters "
      f"({', '.join(names)}).{hint} Add an entry for it, e.g. "
      f"Composite(..., entries=((is_type({type(layer.module).__name__}), "
      "rules.epsilon()), ...)).")


@functools.partial(jax.jit, static_argnums=(0, 1))
def _relevance(model: nn.Module, composite: Composite, variables: Any,
               x: jax.Array, target: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Jitted core: `(R, logits)`; `target < 0` means the argmax."""
  folds = {}
  if composite.fold_batchnorm and "batch_stats" in variables:
    folds = canonize.find_folds(model.apply, variables, x)
  interceptor = _Interceptor(composite, variables, folds)

  def forward(x):
    with nn.intercept_methods(interceptor):
      return model.apply(variables, x)

  logits, vjp = jax.vjp(forward, x)
  if logits.ndim != 2 or logits.shape[0] != x.shape[0]:
    raise ValueError(
        f"The model's output (shape={logits.shape}) must be logits of shape "
        f"(batch, classes) = ({x.shape[0]}, C).")
  target = jnp.where(target < 0,
                     jnp.argmax(logits, axis=-1).astype(target.dtype), target)
  start = jax.nn.one_hot(target, logits.shape[-1], dtype=logits.dtype) * logits
  (r,) = vjp(jax.lax.stop_gradient(start))
  return r, logits


def _target_array(target: Any, batch: int) -> jax.Array:
  """`target` as int32 of shape (batch,), -1 standing for "the argmax"."""
  if target is None:
    return jnp.full((batch,), -1, jnp.int32)
  if isinstance(target, jax.core.Tracer):
    t = target
  else:
    t = np.asarray(target)
    if not np.issubdtype(t.dtype, np.integer) or t.ndim > 1 or (
        t.ndim == 1 and t.shape[0] != batch) or np.any(t < 0):
      raise ValueError(
          f"`target` (={target!r}) must be None (the argmax), an int >= 0 or "
          f"one int >= 0 per example ({batch}).")
  if jnp.ndim(t) == 0:
    return jnp.full((batch,), t, jnp.int32)
  if jnp.shape(t) != (batch,):
    raise ValueError(
        f"`target` (shape={jnp.shape(t)}) must be a scalar or have shape "
        f"({batch},).")
  return jnp.asarray(t, jnp.int32)


def relevance(model: nn.Module, variables: Any, x: jax.typing.ArrayLike, *,
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
    model: an unbound Flax module whose `apply(variables, x)` returns logits
      (batch, classes), built from nn.Conv, nn.Dense, BatchNorm, our pooling
      modules and activation functions (or anything the composite covers).
    variables: its variables (`params`, and `batch_stats` for BatchNorm).
    x: the input batch, e.g. (N, 224, 224, 3).
    target: None (each example's argmax), an int, or one int per example.
    composite: a name in `COMPOSITES` or a `Composite`.
    return_logits: also return the logits of the same forward pass.

  Returns:
    The relevance, shaped like `x`; with `return_logits`, `(R, logits)`.

  Raises:
    ValueError: for an invalid target, an unknown composite, or a layer with
      parameters that the composite does not cover.

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
  x = jnp.asarray(x)
  if x.ndim < 1:
    raise ValueError(f"`x` (shape={x.shape}) must have a batch axis.")
  t = _target_array(target, x.shape[0])
  r, logits = _relevance(model, composite, variables, x, t)
  if not isinstance(t, jax.core.Tracer) and not isinstance(
      logits, jax.core.Tracer):
    bad = np.asarray(t) >= logits.shape[-1]
    if np.any(bad):
      raise ValueError(
          f"`target` (={target!r}) must be < the number of classes "
          f"(={logits.shape[-1]}).")
  return (r, logits) if return_logits else r
