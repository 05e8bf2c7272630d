"""LRP rules as small immutable values, and the one `custom_vjp` that runs them.

A rule follows zennit's `BasicHook` (Anders et al., "Software for dataset-wide
XAI", 2021): a few modified copies of the layer ("terms"), each an input
modifier and a parameter modifier; a gradient mapper that turns the output
relevance and the terms' outputs into one cotangent per term; and a reducer
that combines the modified inputs with the terms' input gradients into the
input relevance. `sr_jax.lrp.core.apply_rule`, one `jax.custom_vjp`, runs
any rule.

A layer is any function `layer_fn(x, params) -> z` that is affine in `x`
(dense, conv, average pooling). Parameters named "bias" (the last key of
their path) are biases; every other parameter is a weight.

Formulas (Bach et al. 2015; Montavon et al. 2017, 2019), with
`z_ij = x_i w_ij` and `R_j` the relevance of output `j`:
  epsilon  R_i = sum_j z_ij / (z_j + eps sign z_j) R_j, z_j = sum_i z_ij + b_j
  gamma    (generalised, Andeol et al. 2021) as epsilon, where output j takes
           x+ (w + g w+) + x- (w + g w-) and b + g b+ when z_j >= 0, and
           x+ (w + g w-) + x- (w + g w+) and b + g b- when z_j < 0
  gamma    (generalised=False, Montavon et al. 2019) as epsilon with
           w + g w+ and b + g b+ for every input and output
  alpha-beta  R_i = sum_j (alpha z+_ij / z+_j - beta z-_ij / z-_j) R_j,
           z+_j = sum_i z+_ij + b+_j, z-_j = sum_i z-_ij + b-_j
  flat / w^2  R_i = sum_j v_ij / sum_i v_ij R_j with v_ij = 1 or w_ij^2
  z^B      z_ij = x_i w_ij - l_i w+_ij - h_i w-_ij, no bias (then as epsilon)
The stabiliser is `z + eps * sign(z)` with sign(0) = +1, and 0/0 is 0.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Hashable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from sr_jax import _deprecation

Array = jax.Array
Params = Any  # a pytree of arrays
LayerFn = Callable[[Array, Params], Array]


def stabilize(z: Array, eps: float) -> Array:
  """`z + eps * sign(z)` with sign(0) = +1."""
  return z + jnp.where(z >= 0, eps, -eps).astype(z.dtype)


def safe_divide(a: Array, b: Array) -> Array:
  """`a / b`, with 0 wherever `b == 0`."""
  nonzero = b != 0
  return jnp.where(nonzero, a / jnp.where(nonzero, b, 1).astype(b.dtype), 0)


def map_params(weight_fn: Callable[[Array], Array],
               bias_fn: Optional[Callable[[Array], Array]] = None
               ) -> Callable[[Params], Params]:
  """A parameter modifier: `weight_fn` on weights, `bias_fn` on biases.

  Args:
    weight_fn: applied to every parameter not named "bias".
    bias_fn: applied to parameters named "bias"; defaults to `weight_fn`.

  Returns:
    A function from a layer's parameter tree to the modified tree.
  """
  bias_fn = weight_fn if bias_fn is None else bias_fn

  def modify(params: Params) -> Params:
    return jax.tree_util.tree_map_with_path(
        lambda path, p: bias_fn(p) if _is_bias(path) else weight_fn(p), params)
  return modify


def _is_bias(path) -> bool:
  last = path[-1] if path else None
  return getattr(last, "key", getattr(last, "name", None)) == "bias"


drop_bias = map_params(lambda p: p, jnp.zeros_like)


class Term(NamedTuple):
  """One modified copy of a layer: `layer_fn(in_mod(x), param_mod(params))`.

  A term with neither modifier, in a rule whose `zero_bias` is False, yields
  the layer's ordinary output `out` (no second forward); a gradient mapper
  that needs `out` (the generalised gamma rule) reads it from such a term
  and gives it a zero cotangent.

  Attributes:
    input_modifier: maps the layer input; None keeps it.
    param_modifier: maps the parameter tree (see `map_params`); None keeps it.
    vanishes_for_nonneg_input: the term is zero whenever `x >= 0` (its input
      modifier takes the negative part), so it is skipped at run time then.
    skip_when: None, or `(x, out, r) -> scalar bool` of the layer input, its
      ordinary output and the output relevance: where it holds, the term's
      contribution to the input relevance is zero whatever its output, so a
      core may skip the term (zero output, zero input gradient). It is a
      hint: running the term anyway gives the same relevance.
  """

  input_modifier: Optional[Callable[[Array], Array]] = None
  param_modifier: Optional[Callable[[Params], Params]] = None
  vanishes_for_nonneg_input: bool = False
  skip_when: Optional[Callable[[Array, Array, Array], Array]] = None


@dataclasses.dataclass(frozen=True, eq=False)
class Rule:
  """An LRP rule, zennit-style: terms, a gradient mapper and a reducer.

  Rules made by the factories in this module compare equal (and hash equal)
  when made with equal arguments, so a jitted `relevance` does not recompile
  for a freshly built but identical composite. A hand-made rule (no `key`)
  compares by the identity of its functions.

  Attributes:
    terms: the modified layer copies; empty for a pass-through rule, whose
      reducer then receives the mapped output relevance itself.
    gradient_mapper: `(R_out, outputs) -> cotangents`, one per term.
    reducer: `(modified_inputs, input_gradients) -> R_in`.
    zero_bias: set every bias to zero in every term.
    name: a short name for messages.
    key: hashable identity of a factory-made rule (None: hand-made).
  """

  terms: tuple[Term, ...]
  gradient_mapper: Callable[[Array, tuple[Array, ...]], tuple[Array, ...]]
  reducer: Callable[[tuple[Array, ...], tuple[Array, ...]], Array]
  zero_bias: bool = False
  name: str = "custom"
  key: Optional[Hashable] = None

  def _identity(self) -> Hashable:
    if self.key is not None:
      return (self.name, self.key, self.zero_bias)
    return (self.terms, self.gradient_mapper, self.reducer, self.zero_bias)

  def __eq__(self, other: object) -> bool:
    return isinstance(other, Rule) and self._identity() == other._identity()

  def __hash__(self) -> int:
    return hash(self._identity())

  def __repr__(self) -> str:
    args = [] if self.key is None else [
        f"{k[1]}={k[2]!r}" if _is_keyword(k) else repr(k) for k in self.key]
    if self.zero_bias:
      args.append("zero_bias=True")
    return f"{self.name}({', '.join(args)})"


def _keyword(name: str, value: Hashable) -> tuple:
  """A `key` entry that `Rule.__repr__` shows as `name=value`."""
  return ("=", name, value)


def _is_keyword(entry: Any) -> bool:
  return isinstance(entry, tuple) and len(entry) == 3 and entry[0] == "="


class KeepGradient(NamedTuple):
  """A layer keeping its own gradient (max-pooling: winner takes all)."""

  name: str = "keep_gradient"

  def __repr__(self) -> str:
    return f"{self.name}()"


Gradient = KeepGradient  # the class's old name


def keep_gradient() -> KeepGradient:
  """The layer keeps its plain gradient (max-pooling: winner takes all).

  Examples:
    >>> keep_gradient()
    keep_gradient()
  """
  return KeepGradient()


# Deprecated: `gradient` was easily confused with `sr_jax.attribution.gradient`.
gradient = _deprecation.alias(keep_gradient, "sr_jax.lrp.rules.gradient")


# --- building blocks shared by the rules -------------------------------------

def normalize(stabilizer: float):
  """Gradient mapper: every term gets `R / stabilize(sum of the outputs)`."""
  def mapper(r, outputs):
    g = safe_divide(r, stabilize(sum(outputs), stabilizer))
    return (g,) * len(outputs)
  return mapper


normalise = _deprecation.alias(normalize, "sr_jax.lrp.rules.normalise")


def input_times_grad(inputs, grads):
  """Reducer: `sum_t x_t * g_t` over the terms' inputs and input gradients."""
  return sum(x * g for x, g in zip(inputs, grads))


def grad_only(inputs, grads):
  """Reducer: the first term's input gradient (for ones-input rules)."""
  del inputs
  return grads[0]


def _check(name: str, value: Any, ok: bool, allowed: str) -> None:
  if not ok:
    raise ValueError(f"`{name}` (={value}) must be {allowed}.")


def _nonneg_float(name: str, value: Any) -> float:
  _check(name, value, np.ndim(value) == 0 and float(value) >= 0,
         "a float >= 0")
  return float(value)


_pos = functools.partial(jnp.maximum, 0)
_neg = functools.partial(jnp.minimum, 0)
_ones = jnp.ones_like


# --- the rules ---------------------------------------------------------------

def epsilon(eps: float = 1e-6, *, zero_bias: bool = False) -> Rule:
  """LRP-epsilon (Bach et al. 2015): `R_i = sum_j z_ij / stab(z_j) R_j`.

  Here `stab(z) = z + eps * sign(z)` and `z_j = sum_i z_ij + b_j`.

  Args:
    eps: stabiliser added to the denominator's magnitude (>= 0).
    zero_bias: leave the bias out of `z_j`.

  Returns:
    The rule.

  Examples:
    >>> epsilon(0.25)
    epsilon(0.25)
  """
  eps = _nonneg_float("eps", eps)
  return Rule((Term(),), normalize(eps), input_times_grad, zero_bias,
              "epsilon", (eps,))


def zero(*, zero_bias: bool = False) -> Rule:
  """LRP-0: epsilon with `eps = 0` (a zero denominator gives zero relevance)."""
  return dataclasses.replace(epsilon(0.0, zero_bias=zero_bias), name="zero",
                             key=())


# pylint: disable-next=redefined-outer-name
def gamma(gamma: float = 0.25, *, generalised: bool = True,
          zero_bias: bool = False, stabilizer: float = 1e-6) -> Rule:
  """LRP-gamma, by default in its generalised form for inputs of any sign.

  The generalised rule (Andeol et al. 2021, "Learning domain invariant
  representations by joint Wasserstein distance minimization", and zennit's
  `Gamma`) favours the contributions that share the sign of the output
  `z_j = sum_i x_i w_ij + b_j`. Where `z_j >= 0`, output j shares its
  relevance in proportion to `x+ (w + g w+) + x- (w + g w-)`, with
  `b + g b+` in the denominator; where `z_j < 0`, in proportion to
  `x+ (w + g w-) + x- (w + g w+)`, with `b + g b-`. The side follows the
  ordinary output, bias included, also with `zero_bias` (as in zennit);
  `z_j = 0` counts as positive (sign(0) = +1, as in the stabiliser; zennit
  gives such outputs no relevance). With `gamma=0` it is epsilon.

  With `generalised=False` it is the rule of Montavon et al. 2019 ("Layer-
  wise relevance propagation: an overview"): epsilon on `w + g w+` and
  `b + g b+` for every input and output, meant for non-negative input. The
  two agree on non-negative input at every output with `z_j >= 0`, hence on
  the whole layer when outputs with `z_j < 0` carry no relevance, as before
  a ReLU.

  Args:
    gamma: weight of the parameters of the output's sign (>= 0).
    generalised: the generalised rule (True) or Montavon et al.'s (False).
    zero_bias: leave the bias out of the denominators.
    stabilizer: epsilon of the denominators.

  Returns:
    The rule.

  Examples:
    >>> gamma(0.5)
    gamma(0.5, 1e-06)
    >>> gamma(0.5, generalised=False, zero_bias=True)
    gamma(0.5, 1e-06, generalised=False, zero_bias=True)
  """
  g = _nonneg_float("gamma", gamma)
  stabilizer = _nonneg_float("stabilizer", stabilizer)
  if not generalised:
    term = Term(param_modifier=map_params(lambda p: p + g * _pos(p)))
    return Rule((term,), normalize(stabilizer), input_times_grad, zero_bias,
                "gamma", (g, stabilizer, _keyword("generalised", False)))
  return _generalised_gamma(g, stabilizer, zero_bias)


def _generalised_gamma(g: float, stabilizer: float, zero_bias: bool) -> Rule:
  """`gamma(g)`: four terms as in zennit's `Gamma`, and the ordinary output.

  The bias is dropped in the terms' own parameter modifiers, not by the
  rule's `zero_bias`, so that the fifth (unmodified) term stays the ordinary
  output, bias included, which decides each output's side.
  """
  def plus_g(part):
    return lambda p: p + g * part(p)

  bias = jnp.zeros_like if zero_bias else None  # None: as the weights

  def no_negative_relevance(x, out, r):  # the negative side's hint
    del x  # before a ReLU, outputs z_j < 0 have no relevance
    return ~jnp.any((out < 0) & (r != 0))

  def no_negative_relevance_or_nonneg(x, out, r):
    return jnp.all(x >= 0) | no_negative_relevance(x, out, r)

  terms = (
      Term(_pos, map_params(plus_g(_pos), bias)),
      Term(_neg, map_params(plus_g(_neg), jnp.zeros_like), True),
      Term(_pos, map_params(plus_g(_neg), bias),
           skip_when=no_negative_relevance),
      Term(_neg, map_params(plus_g(_pos), jnp.zeros_like), True,
           no_negative_relevance_or_nonneg),
      Term())

  def mapper(r, outputs):
    positive = outputs[4] >= 0
    zero = jnp.zeros_like(r)
    up = safe_divide(r, stabilize(outputs[0] + outputs[1], stabilizer))
    down = safe_divide(r, stabilize(outputs[2] + outputs[3], stabilizer))
    up, down = jnp.where(positive, up, zero), jnp.where(positive, zero, down)
    return up, up, down, down, zero

  def reducer(inputs, grads):
    return sum(x * grad for x, grad in zip(inputs[:4], grads[:4]))

  key = (g, stabilizer) + ((_keyword("zero_bias", True),) if zero_bias else ())
  return Rule(terms, mapper, reducer, False, "gamma", key)


def alpha_beta(alpha: float = 2.0, beta: float = 1.0, *,
               zero_bias: bool = False, stabilizer: float = 1e-6) -> Rule:
  """LRP-alpha-beta (Bach et al. 2015) with `alpha - beta = 1`.

  Positive contributions `(x_i w_ij)+ = x+ w+ + x- w-` (and `b+`) share
  `alpha R_j`; negative ones (and `b-`) share `-beta R_j`.

  Args:
    alpha: weight of the positive part (>= 0).
    beta: weight of the negative part (>= 0), `alpha - beta == 1`.
    zero_bias: leave the bias out.
    stabilizer: epsilon of both denominators.

  Returns:
    The rule.

  Raises:
    ValueError: when alpha or beta is negative or `alpha - beta != 1`.
  """
  a, b = float(alpha), float(beta)
  if a < 0 or b < 0 or abs(a - b - 1.0) > 1e-12:
    raise ValueError(
        f"`alpha` (={alpha}) and `beta` (={beta}) must both be >= 0 with "
        f"alpha - beta == 1, e.g. alpha=2, beta=1 or alpha=1, beta=0.")
  stabilizer = _nonneg_float("stabilizer", stabilizer)
  plus, minus = map_params(_pos), map_params(_neg)
  terms = (Term(_pos, plus),
           Term(_neg, map_params(_neg, jnp.zeros_like), True))
  if b:
    terms += (Term(_pos, minus),
              Term(_neg, map_params(_pos, jnp.zeros_like), True))

  def mapper(r, outputs):
    g = safe_divide(r, stabilize(outputs[0] + outputs[1], stabilizer))
    if len(outputs) == 2:
      return g, g
    h = safe_divide(r, stabilize(outputs[2] + outputs[3], stabilizer))
    return g, g, h, h

  def reducer(inputs, grads):
    rel = a * (inputs[0] * grads[0] + inputs[1] * grads[1])
    if len(grads) == 2:
      return rel
    return rel - b * (inputs[2] * grads[2] + inputs[3] * grads[3])

  name = "zplus" if b == 0 else "alpha_beta"
  key = (stabilizer,) if b == 0 else (a, b, stabilizer)
  return Rule(terms, mapper, reducer, zero_bias, name, key)


def zplus(*, zero_bias: bool = False, stabilizer: float = 1e-6) -> Rule:
  """LRP-z+ (Montavon et al. 2017): alpha-beta with alpha=1, beta=0."""
  return alpha_beta(1.0, 0.0, zero_bias=zero_bias, stabilizer=stabilizer)


def flat(*, zero_bias: bool = True, stabilizer: float = 1e-6) -> Rule:
  """LRP-flat (Lapuschkin et al. 2019): spread `R_j` evenly over its inputs.

  Every connection counts one (padding does not count), so the bias never
  enters; `zero_bias` is accepted for uniformity and has no effect.
  """
  stabilizer = _nonneg_float("stabilizer", stabilizer)
  term = Term(_ones, map_params(_ones, jnp.zeros_like))
  return Rule((term,), normalize(stabilizer), grad_only, zero_bias, "flat",
              (stabilizer,))


def wsquare(*, zero_bias: bool = False, stabilizer: float = 1e-6) -> Rule:
  """LRP-w^2 (Montavon et al. 2017): `R_i = sum_j w_ij^2 / stab(z_j) R_j`.

  Here `z_j = sum_i w_ij^2 + b_j^2`.
  """
  stabilizer = _nonneg_float("stabilizer", stabilizer)
  term = Term(_ones, map_params(jnp.square))
  return Rule((term,), normalize(stabilizer), grad_only, zero_bias,
              "wsquare", (stabilizer,))


def zbox(low: Any, high: Any, *, zero_bias: bool = True,
         stabilizer: float = 1e-6) -> Rule:
  """LRP-z^B (Montavon et al. 2017) for input bounded by `low <= x <= high`.

  `R_i = sum_j z_ij / stab(sum_i z_ij) R_j` with
  `z_ij = x_i w_ij - l_i w+_ij - h_i w-_ij`: the z^B rule of Montavon et al.,
  "Explaining nonlinear classification decisions with deep Taylor
  decomposition" (Pattern Recognition 65, 2017), has no bias term. zennit's
  `ZBox` keeps the bias in all three of its terms, where it cancels
  (`b - b+ - b-`), so it computes the same. `zero_bias=False` adds the
  layer's bias `b_j` to the denominator instead.

  The bounds follow the input's dtype (float64 under `jax_enable_x64`).

  Args:
    low: lowest input value: a scalar or a per-channel array (last axis).
    high: highest input value, same forms.
    zero_bias: leave the bias out of the denominator (the rule as published).
    stabilizer: epsilon of the denominator.

  Returns:
    The rule.

  Raises:
    ValueError: when a bound is not finite or `low > high` somewhere.

  Examples:
    >>> zbox(-2.1, [2.2, 2.4, 2.6])
    zbox((-2.1,), (2.2, 2.4, 2.6), 1e-06, zero_bias=True)
  """
  lo = np.atleast_1d(np.asarray(low, np.float64))
  hi = np.atleast_1d(np.asarray(high, np.float64))
  if lo.ndim != 1 or hi.ndim != 1 or not (np.all(np.isfinite(lo))
                                          and np.all(np.isfinite(hi))):
    raise ValueError(
        f"`low` (={low}) and `high` (={high}) must be finite scalars or "
        "1-D per-channel arrays.")
  try:
    ordered = bool(np.all(lo <= hi))
  except ValueError:
    ordered = False
  if not ordered:
    raise ValueError(
        f"`low` (={low}) must be <= `high` (={high}) elementwise, with "
        "broadcastable shapes.")
  stabilizer = _nonneg_float("stabilizer", stabilizer)

  def bound(value):  # float64 NumPy, cast to the input's dtype
    return lambda x: jnp.broadcast_to(jnp.asarray(value, x.dtype), x.shape)

  terms = (Term(),
           Term(bound(lo), map_params(_pos, jnp.zeros_like)),
           Term(bound(hi), map_params(_neg, jnp.zeros_like)))

  def mapper(r, outputs):
    g = safe_divide(r, stabilize(outputs[0] - outputs[1] - outputs[2],
                                 stabilizer))
    return g, g, g

  def reducer(inputs, grads):
    return (inputs[0] * grads[0] - inputs[1] * grads[1]
            - inputs[2] * grads[2])

  return Rule(terms, mapper, reducer, zero_bias, "zbox",
              (tuple(lo.tolist()), tuple(hi.tolist()), stabilizer))


def pass_() -> Rule:
  """Hands the output relevance to the input unchanged (same shapes only)."""
  return Rule((), lambda r, outputs: (r,), grad_only, False, "pass", ())
