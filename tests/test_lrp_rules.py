"""Each LRP rule on one layer against the float64 matrix-form reference."""

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sr_jax.lrp import rules
from sr_jax.lrp.core import apply_rule
from sr_jax.models.layers import AdaptiveAvgPool2d
from tests.reference import lrp_matrix

# Bounds that float32 cannot hold exactly: a cast to float32 would show.
LOW = np.array([-1.53, -0.47, -2.11])
HIGH = np.array([2.07, 1.49, 0.53])

# (rule, reference keyword arguments)
RULES = {
    "zero": (rules.zero, dict(rule="epsilon", eps=0.0)),
    "epsilon_0.01": (lambda **kw: rules.epsilon(0.01, **kw),
                     dict(rule="epsilon", eps=0.01)),
    "epsilon_1": (lambda **kw: rules.epsilon(1.0, **kw),
                  dict(rule="epsilon", eps=1.0)),
    "gamma_0.25": (lambda **kw: rules.gamma(0.25, **kw),
                   dict(rule="gamma", gamma=0.25)),
    "gamma_2": (lambda **kw: rules.gamma(2.0, stabilizer=0.1, **kw),
                dict(rule="gamma", gamma=2.0, stabilizer=0.1)),
    "gamma_0.25_basic": (
        lambda **kw: rules.gamma(0.25, generalised=False, **kw),
        dict(rule="gamma", gamma=0.25, generalised=False)),
    "gamma_2_basic": (
        lambda **kw: rules.gamma(2.0, generalised=False, stabilizer=0.1, **kw),
        dict(rule="gamma", gamma=2.0, generalised=False, stabilizer=0.1)),
    "zplus": (rules.zplus, dict(rule="alpha_beta", alpha=1.0, beta=0.0)),
    "alpha2_beta1": (lambda **kw: rules.alpha_beta(2.0, 1.0, **kw),
                     dict(rule="alpha_beta", alpha=2.0, beta=1.0)),
    "alpha1.5_beta0.5": (
        lambda **kw: rules.alpha_beta(1.5, 0.5, stabilizer=1e-3, **kw),
        dict(rule="alpha_beta", alpha=1.5, beta=0.5, stabilizer=1e-3)),
    "flat": (rules.flat, dict(rule="flat")),
    "wsquare": (rules.wsquare, dict(rule="wsquare")),
    "zbox_scalar": (lambda **kw: rules.zbox(-1.1, 2.3, **kw),
                    dict(rule="zbox", low=-1.1, high=2.3)),
    "zbox_channels": (lambda **kw: rules.zbox(LOW, HIGH, **kw),
                      dict(rule="zbox", low=LOW, high=HIGH)),
}

# name -> (module, input shape)
LAYERS = {
    "dense": (nn.Dense(5), (3, 7)),
    "conv_s2_p1": (nn.Conv(4, (3, 3), strides=(2, 2),
                           padding=((1, 1), (1, 1))), (2, 7, 6, 3)),
    "conv_s2x1_asym": (nn.Conv(4, (3, 2), strides=(2, 1),
                               padding=((0, 1), (2, 1))), (2, 6, 5, 3)),
}


def _layer(name, seed):
  """A layer's function, its float64 params, input, and its matrix form."""
  module, shape = LAYERS[name]
  rng = np.random.default_rng(seed)
  x = rng.normal(size=shape)
  if isinstance(module, nn.Dense):
    kernel = rng.normal(size=(shape[-1], 5)) / np.sqrt(shape[-1])
  else:
    fan_in = np.prod(module.kernel_size) * shape[-1]
    kernel = rng.normal(size=(*module.kernel_size, shape[-1], 4)) / np.sqrt(
        fan_in)
  bias = rng.normal(size=kernel.shape[-1]) * 0.5
  params = {"kernel": kernel, "bias": bias}

  def layer_fn(x, p):
    return module.apply({"params": p}, x)

  if isinstance(module, nn.Dense):
    m, b = kernel, bias
  else:
    m, out_hw = lrp_matrix.conv_matrix(kernel, shape[1:3], module.strides,
                                       module.padding)
    b = np.tile(bias, out_hw[0] * out_hw[1])
  return layer_fn, params, x, m, b


def _ours(rule, layer_fn, x, params, r):
  """Input relevance from jax.vjp of the rule's custom_vjp, and the output."""
  y, vjp = jax.vjp(lambda x: apply_rule(rule, layer_fn, x, params), x)
  return vjp(jnp.asarray(r, y.dtype))[0], y


def _reference(kwargs, x, m, b, r, zero_bias):
  kwargs = dict(kwargs)
  for bound in ("low", "high"):
    if bound in kwargs:  # one bound per input element (channel last)
      kwargs[bound] = np.broadcast_to(kwargs[bound], x.shape[1:]).reshape(-1)
  flat_x = x.reshape(x.shape[0], -1)
  flat_r = r.reshape(r.shape[0], -1)
  return np.stack([
      lrp_matrix.lrp(x=xi, m=m, b=b, r=ri, zero_bias=zero_bias, **kwargs)
      for xi, ri in zip(flat_x, flat_r)]).reshape(x.shape)


# Alpha-beta, z+ and the generalised gamma treat negative inputs apart (and
# skip terms for x >= 0): they get both signed and non-negative input.
SIGN_AWARE = ("zplus", "alpha2_beta1", "alpha1.5_beta0.5", "gamma_0.25",
              "gamma_2")
CASES = [(layer, rule, zero_bias, nonneg)
         for layer in sorted(LAYERS) for rule in sorted(RULES)
         for zero_bias in (False, True)
         for nonneg in ((False, True) if rule in SIGN_AWARE else (False,))]


@pytest.mark.parametrize("layer, rule_name, zero_bias, nonneg", CASES)
def test_rule_matches_matrix_reference(layer, rule_name, zero_bias, nonneg):
  make, ref_kwargs = RULES[rule_name]
  if rule_name.startswith("zbox") and layer == "dense":
    ref_kwargs = dict(ref_kwargs, low=-1.1, high=2.3)
    make = RULES["zbox_scalar"][0]
  with jax.enable_x64(True):
    layer_fn, params, x, m, b = _layer(layer, seed=len(rule_name))
    if nonneg:
      x = np.maximum(x, 0)
    params = jax.tree.map(jnp.asarray, params)
    rng = np.random.default_rng(1)
    out_shape = jax.eval_shape(layer_fn, jnp.asarray(x), params).shape
    r = rng.normal(size=out_shape)
    got, y = _ours(make(zero_bias=zero_bias), layer_fn, jnp.asarray(x),
                   params, r)
    np.testing.assert_allclose(y, layer_fn(jnp.asarray(x), params), atol=0)
    want = _reference(ref_kwargs, x, m, b, r, zero_bias)
  assert got.dtype == jnp.float64
  # float64 on both sides: agreement to rounding, relative to max|R|.
  got = np.asarray(got)
  assert np.max(np.abs(got - want)) <= 1e-10 * np.max(np.abs(want))


def _float64_case(seed):
  """A conv with non-zero biases in float64: fn, params, signed input x,
  its ReLU, the relevance r of every output, and r after a ReLU on the
  outputs (zero wherever z_j <= 0), with the matrix form (m, b)."""
  layer_fn, params, x, m, b = _layer("conv_s2_p1", seed=seed)
  assert np.all(b != 0)
  params = jax.tree.map(jnp.asarray, params)
  z = np.asarray(layer_fn(jnp.asarray(np.maximum(x, 0)), params))
  r = np.random.default_rng(seed + 1).normal(size=z.shape)
  return layer_fn, params, x, np.maximum(x, 0), r, np.where(z > 0, r, 0.0), m, b


def _r64(rule, layer_fn, x, params, r):
  return np.asarray(_ours(rule, layer_fn, jnp.asarray(x), params, r)[0])


def test_zbox_default_has_no_bias_term():
  """z^B as Montavon et al. 2017 define it: the layer's bias stays out."""
  assert rules.zbox(LOW, HIGH) == rules.zbox(LOW, HIGH, zero_bias=True)
  with jax.enable_x64(True):
    layer_fn, params, x, _, r, _, m, b = _float64_case(seed=9)
    default = _r64(rules.zbox(LOW, HIGH), layer_fn, x, params, r)
    with_bias = _r64(rules.zbox(LOW, HIGH, zero_bias=False), layer_fn, x,
                     params, r)
  kwargs = dict(rule="zbox", low=LOW, high=HIGH)
  want = _reference(kwargs, x, m, b, r, True)
  scale = np.max(np.abs(want))
  assert default.dtype == np.float64
  assert np.max(np.abs(default - want)) <= 1e-10 * scale
  assert np.max(np.abs(with_bias - want)) > 1e-2 * scale
  assert np.max(np.abs(with_bias - _reference(kwargs, x, m, b, r, False))
                ) <= 1e-10 * scale


@pytest.mark.parametrize("zero_bias", [False, True])
def test_generalised_gamma_is_gamma_after_a_relu_only(zero_bias):
  """Equal on x >= 0 when outputs z_j < 0 carry no relevance (a ReLU
  follows); different on signed input or with relevance at z_j < 0."""
  def both(x, r):
    return [_r64(rules.gamma(0.25, generalised=g, zero_bias=zero_bias),
                 layer_fn, x, params, r) for g in (True, False)]
  with jax.enable_x64(True):
    layer_fn, params, x, x_relu, r, r_relu, _, _ = _float64_case(seed=10)
    general, basic = both(x_relu, r_relu)
    scale = np.max(np.abs(basic))
    assert np.max(np.abs(general - basic)) <= 1e-12 * scale
    for xi, ri in ((x_relu, r), (x, r_relu)):
      general, basic = both(xi, ri)
      assert np.max(np.abs(general - basic)) > 1e-2 * np.max(np.abs(basic))


def _without_hints(rule):
  terms = tuple(t._replace(skip_when=None, vanishes_for_nonneg_input=False)
                for t in rule.terms)
  return dataclasses.replace(rule, terms=terms)


@pytest.mark.parametrize("jit", [False, True])
def test_gamma_skip_hints_change_no_relevance(jit):
  """The generalised gamma's negative-side terms are skipped where outputs
  z_j < 0 carry no relevance (before a ReLU) and input is non-negative;
  skipped or not, eager or traced, the relevance is the same, and traced,
  the hinted terms' convolutions sit inside `lax.cond`s."""
  rule = rules.gamma(0.25)
  assert sum(t.skip_when is not None for t in rule.terms) == 2
  with jax.enable_x64(True):
    layer_fn, params, x, x_relu, r, r_relu, _, _ = _float64_case(seed=12)

    def run(rl, xi, ri):
      fn = lambda xi, ri: _ours(rl, layer_fn, xi, params, ri)[0]
      return np.asarray((jax.jit(fn) if jit else fn)(jnp.asarray(xi),
                                                       jnp.asarray(ri)))

    for xi, ri in ((x_relu, r_relu), (x_relu, r), (x, r_relu), (x, r)):
      got, want = run(rule, xi, ri), run(_without_hints(rule), xi, ri)
      np.testing.assert_allclose(got, want, rtol=1e-13,
                                 atol=1e-13 * np.abs(want).max())
    jaxpr = str(jax.make_jaxpr(lambda xi, ri: _ours(
        rule, layer_fn, xi, params, ri)[0])(jnp.asarray(x), jnp.asarray(r)))
    assert jaxpr.count("cond[") >= 3  # terms 2-4 forward (and backward)


@pytest.mark.parametrize("zero_bias", [False, True])
def test_generalised_gamma_at_zero_is_epsilon(zero_bias):
  with jax.enable_x64(True):
    layer_fn, params, x, _, r, _, _, _ = _float64_case(seed=11)
    got = _r64(rules.gamma(0.0, zero_bias=zero_bias, stabilizer=0.01),
               layer_fn, x, params, r)
    want = _r64(rules.epsilon(0.01, zero_bias=zero_bias), layer_fn, x, params,
                r)
  assert np.max(np.abs(got - want)) <= 1e-12 * np.max(np.abs(want))


@pytest.mark.parametrize("make", [
    lambda: rules.gamma(0.25), lambda: rules.gamma(2.0, zero_bias=True)],
    ids=["gamma", "gamma_zero_bias"])
def test_skip_hints_hold_where_the_term_has_no_effect(make):
  """Where a term's `skip_when` holds, a zero term in its place (zero output,
  zero input gradient) leaves the relevance unchanged; and it does not hold
  once outputs z_j < 0 carry relevance."""
  rule = make()
  hinted = [k for k, t in enumerate(rule.terms) if t.skip_when is not None]
  assert hinted == [2, 3]  # the negative side
  zero_term = rules.Term(jnp.zeros_like, rules.map_params(jnp.zeros_like))
  with jax.enable_x64(True):
    layer_fn, params, x, x_relu, r, _, _, _ = _float64_case(seed=12)
    for xi in (x, x_relu):
      out = layer_fn(jnp.asarray(xi), params)
      r_relu = np.where(out > 0, r, 0.0)
      want = _r64(rule, layer_fn, xi, params, r_relu)
      for k in hinted:
        hint = functools.partial(rule.terms[k].skip_when, jnp.asarray(xi), out)
        assert bool(hint(jnp.asarray(r_relu)))
        if xi is x or not rule.terms[k].vanishes_for_nonneg_input:
          assert not bool(hint(jnp.asarray(r)))
        terms = rule.terms[:k] + (zero_term,) + rule.terms[k + 1:]
        skipped = rules.Rule(terms, rule.gradient_mapper, rule.reducer,
                             rule.zero_bias)
        np.testing.assert_array_equal(
            _r64(skipped, layer_fn, xi, params, r_relu), want)


@pytest.mark.parametrize("nonneg", [False, True], ids=["signed", "relu"])
def test_jitted_float32_conv_matches_reference(nonneg):
  """Under jit the negative-input terms are skipped by lax.cond when x >= 0."""
  layer_fn, params, x, _, _ = _layer("conv_s2_p1", seed=3)
  # The reference sees the same float32-rounded numbers.
  x = (np.maximum(x, 0) if nonneg else x).astype(np.float32)
  r = np.random.default_rng(2).normal(size=(2, 4, 3, 4)).astype(np.float32)
  p32 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)
  m, _ = lrp_matrix.conv_matrix(np.asarray(p32["kernel"], np.float64),
                                (7, 6), (2, 2), ((1, 1), (1, 1)))
  b = np.tile(np.asarray(p32["bias"], np.float64), 12)
  # Montavon et al.'s gamma is for non-negative input; on signed input its
  # sums cancel to ~1e-3 here, which float32 cannot resolve to this
  # tolerance. The generalised gamma's denominators are at least |z_j|.
  names = ("alpha2_beta1", "gamma_0.25")
  names += ("gamma_0.25_basic",) if nonneg else ()
  for make, kwargs in (RULES[n] for n in names):
    rule = make()
    run = jax.jit(lambda x, p, r, rule=rule: _ours(rule, layer_fn, x, p, r)[0])
    got = run(jnp.asarray(x, jnp.float32), p32, r)
    want = _reference(kwargs, x, m, b, r, False)
    assert got.dtype == jnp.float32
    # float32 over a float64 reference: relative to the largest relevance.
    assert np.max(np.abs(got - want)) <= 1e-5 * np.max(np.abs(want))


def test_adaptive_avg_pool_is_a_linear_layer():
  """Pooling 5x4 to 3x3 (overlapping bins) under epsilon, by its matrix."""
  pool = AdaptiveAvgPool2d((3, 3))
  with jax.enable_x64(True):
    rng = np.random.default_rng(4)
    x = rng.uniform(0, 1, size=(2, 5, 4, 2))
    r = rng.normal(size=(2, 3, 3, 2))
    got, _ = _ours(rules.epsilon(0.01), lambda x, p: pool.apply({}, x),
                   jnp.asarray(x), {}, r)
  m = np.einsum("hi,wj,cd->hwcijd", lrp_matrix.pool_matrix(5, 3),
                lrp_matrix.pool_matrix(4, 3), np.eye(2)).reshape(40, 18)
  want = _reference(dict(rule="epsilon", eps=0.01), x, m, np.zeros(18), r,
                    False)
  np.testing.assert_allclose(np.asarray(got), want, atol=1e-5, rtol=0)


def test_pass_hands_relevance_through():
  r = jnp.arange(6.0).reshape(2, 3)
  got, _ = _ours(rules.pass_(), lambda x, p: x * 3.0, jnp.ones((2, 3)), {}, r)
  np.testing.assert_array_equal(got, r)


@pytest.mark.parametrize("make", [
    lambda: rules.zero(zero_bias=True), lambda: rules.zplus(zero_bias=True),
    lambda: rules.alpha_beta(2.0, 1.0, zero_bias=True),
    lambda: rules.alpha_beta(3.0, 2.0, zero_bias=True, stabilizer=0.0),
    rules.flat, lambda: rules.wsquare(zero_bias=True)],
    ids=["zero", "zplus", "alpha2_beta1", "alpha3_beta2", "flat", "wsquare"])
def test_zero_bias_rules_conserve_layer_by_layer(make):
  layer_fn, params, x, _, _ = _layer("conv_s2_p1", seed=5)
  x = jnp.asarray(np.abs(x) + 0.1, jnp.float32)
  params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)
  r = jnp.asarray(np.random.default_rng(6).uniform(0.5, 1.5, (2, 4, 3, 4)),
                  jnp.float32)
  got, _ = _ours(make(), layer_fn, x, params, r)
  np.testing.assert_allclose(got.reshape(2, -1).sum(1),
                             r.reshape(2, -1).sum(1), rtol=2e-5)


def test_bias_absorbs_relevance_under_epsilon():
  """With a bias, LRP-0 keeps sum_j R_j (z_j - b_j) / z_j, not sum_j R_j."""
  layer_fn, params, x, _, _ = _layer("dense", seed=7)
  with jax.enable_x64(True):
    params = jax.tree.map(jnp.asarray, params)
    z = layer_fn(jnp.asarray(x), params)
    r = np.ones(z.shape)
    got, _ = _ours(rules.zero(), layer_fn, jnp.asarray(x), params, r)
    want = np.sum((z - params["bias"]) / z, axis=1)
    np.testing.assert_allclose(got.sum(1), want, rtol=1e-10)


def test_params_get_no_relevance():
  layer_fn, params, x, _, _ = _layer("dense", seed=8)
  params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)
  x = jnp.asarray(x, jnp.float32)
  grads = jax.grad(lambda p: apply_rule(rules.gamma(), layer_fn, x, p)
                   .sum())(params)
  assert all(not np.any(g) for g in jax.tree.leaves(grads))


def test_rules_compare_by_value():
  assert rules.epsilon(0.1) == rules.epsilon(0.1)
  assert hash(rules.zbox(LOW, HIGH)) == hash(rules.zbox(LOW, HIGH))
  assert rules.epsilon(0.1) != rules.epsilon(0.1, zero_bias=True)
  assert rules.zplus() != rules.alpha_beta(2.0, 1.0)
  assert rules.gamma(0.25) == rules.gamma(0.25, generalised=True)
  assert rules.gamma(0.25) != rules.gamma(0.25, generalised=False)
  assert rules.gamma(0.25) != rules.gamma(0.25, zero_bias=True)
  assert repr(rules.gamma(0.5, zero_bias=True)) == (
      "gamma(0.5, 1e-06, zero_bias=True)")
  assert repr(rules.gamma(0.5, generalised=False, zero_bias=True)) == (
      "gamma(0.5, 1e-06, generalised=False, zero_bias=True)")
  assert repr(rules.zbox(-2.1, [2.2, 2.4])) == (
      "zbox((-2.1,), (2.2, 2.4), 1e-06, zero_bias=True)")
  custom = rules.Rule((rules.Term(),), rules.normalize(0.1),
                      rules.input_times_grad)
  assert custom != rules.epsilon(0.1) and custom == custom


@pytest.mark.parametrize("make, match", [
    (lambda: rules.alpha_beta(2.0, 0.5),
     r"`alpha` \(=2.0\) and `beta` \(=0.5\) must both be >= 0 with "
     r"alpha - beta == 1"),
    (lambda: rules.alpha_beta(0.5, -0.5),
     r"`alpha` \(=0.5\) and `beta` \(=-0.5\) must both be >= 0"),
    (lambda: rules.epsilon(-1e-3), r"`eps` \(=-0.001\) must be a float >= 0"),
    (lambda: rules.gamma(-0.25), r"`gamma` \(=-0.25\) must be a float >= 0"),
    (lambda: rules.zplus(stabilizer=-1.0),
     r"`stabilizer` \(=-1.0\) must be a float >= 0"),
    (lambda: rules.zbox(1.0, 0.0),
     r"`low` \(=1.0\) must be <= `high` \(=0.0\) elementwise"),
    (lambda: rules.zbox([0.0, 0.0], [1.0, 1.0, 1.0]),
     r"`low` \(=\[0.0, 0.0\]\) must be <= `high`"),
    (lambda: rules.zbox(np.nan, 1.0), r"must be finite scalars or 1-D"),
])
def test_invalid_rule_parameters(make, match):
  with pytest.raises(ValueError, match=match):
    make()


def test_stabiliser_sign_of_zero_is_plus_and_zero_over_zero_is_zero():
  z = jnp.array([0.0, -0.0, 2.0, -2.0])
  np.testing.assert_array_equal(rules.stabilize(z, 0.5), [0.5, 0.5, 2.5, -2.5])
  # LRP-0 where z_j = 0 (all inputs zero, no bias): no NaN, no relevance.
  dense = lambda x, p: x @ p["kernel"]
  got, _ = _ours(rules.zero(), dense, jnp.zeros((1, 3)),
                 {"kernel": jnp.ones((3, 2))}, np.ones((1, 2)))
  np.testing.assert_array_equal(got, np.zeros((1, 3)))


def test_keep_gradient_and_the_deprecated_old_names():
  from sr_jax import lrp  # pylint: disable=import-outside-toplevel
  assert repr(rules.keep_gradient()) == "keep_gradient()"
  assert rules.keep_gradient() == rules.KeepGradient()
  assert rules.Gradient is rules.KeepGradient
  for old in (rules.gradient, lrp.gradient):
    with pytest.warns(DeprecationWarning, match=r"`sr_jax\.lrp\.rules\."
                      r"gradient` is deprecated; use `sr_jax\.lrp\.rules\."
                      r"keep_gradient`"):
      assert old() == rules.keep_gradient()
  with pytest.warns(DeprecationWarning, match=r"rules\.normalise` is "
                    r"deprecated; use `sr_jax\.lrp\.rules\.normalize`"):
    mapper = rules.normalise(0.1)
  r, outputs = jnp.array([1.0, 2.0]), (jnp.array([2.0, 4.0]),)
  np.testing.assert_array_equal(mapper(r, outputs)[0],
                                rules.normalize(0.1)(r, outputs)[0])
