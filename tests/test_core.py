"""The explanation core: one small CNN written four ways (linen, NNX,
equinox, a pure function) with identical weights gives identical maps for
every composite and method; LRP on it matches an independent float64 matrix
implementation (bare relu, max-pool and a mean before the dense layer); bare
`jax.nn.relu` equals `max(x, 0)`; unsupported primitives are named."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sr_jax import attribution, lrp
from sr_jax.core import backward, graph, models
from sr_jax.lrp import rules
from tests.reference import lrp_matrix

eqx = pytest.importorskip("equinox")

H = W = 8
C1, C2, K = 4, 6, 5


def _weights(seed=0):
  r = np.random.default_rng(seed)
  return {"k1": r.normal(size=(3, 3, 3, C1)) * 0.5,
          "b1": r.normal(size=(C1,)) * 0.1,
          "k2": r.normal(size=(3, 3, C1, C2)) * 0.3,
          "b2": r.normal(size=(C2,)) * 0.1,
          "w": r.normal(size=(C2, K)), "b": r.normal(size=(K,)) * 0.1}


class Linen(nn.Module):
  """As users write one: bare relu, nn.max_pool, a mean before the dense."""

  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Conv(C1, (3, 3), padding=((1, 1), (1, 1)), name="c1")(x))
    x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = nn.Conv(C2, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)),
                name="c2")(x)
    x = jnp.maximum(x, 0.0)
    return nn.Dense(K, name="fc")(x.mean((1, 2)))


class NNX(nnx.Module):
  def __init__(self, w):
    rngs = nnx.Rngs(0)
    self.c1 = nnx.Conv(3, C1, (3, 3), padding=((1, 1), (1, 1)), rngs=rngs)
    self.c2 = nnx.Conv(C1, C2, (3, 3), strides=(2, 2),
                       padding=((1, 1), (1, 1)), rngs=rngs)
    self.fc = nnx.Linear(C2, K, rngs=rngs)
    for layer, k, b in ((self.c1, "k1", "b1"), (self.c2, "k2", "b2"),
                        (self.fc, "w", "b")):
      layer.kernel.set_value(jnp.asarray(w[k]))
      layer.bias.set_value(jnp.asarray(w[b]))

  def __call__(self, x):
    x = jax.nn.relu(self.c1(x))
    x = nnx.max_pool(x, (2, 2), strides=(2, 2))
    x = jax.nn.relu(self.c2(x))
    return self.fc(x.mean((1, 2)))


class Eqx(eqx.Module):
  """equinox's convention: one CHW example (the core vmaps it)."""

  c1: eqx.nn.Conv2d
  c2: eqx.nn.Conv2d
  fc: eqx.nn.Linear

  def __init__(self, w):
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    c1 = eqx.nn.Conv2d(3, C1, 3, padding=1, key=keys[0])
    c2 = eqx.nn.Conv2d(C1, C2, 3, stride=2, padding=1, key=keys[1])
    fc = eqx.nn.Linear(C2, K, key=keys[2])
    oihw = lambda k: jnp.asarray(np.transpose(k, (3, 2, 0, 1)))  # noqa: E731
    self.c1 = eqx.tree_at(lambda m: (m.weight, m.bias), c1,
                          (oihw(w["k1"]), jnp.asarray(w["b1"])[:, None, None]))
    self.c2 = eqx.tree_at(lambda m: (m.weight, m.bias), c2,
                          (oihw(w["k2"]), jnp.asarray(w["b2"])[:, None, None]))
    self.fc = eqx.tree_at(lambda m: (m.weight, m.bias), fc,
                          (jnp.asarray(w["w"].T), jnp.asarray(w["b"])))

  def __call__(self, x):
    x = jnp.transpose(x, (2, 0, 1))
    x = jax.nn.relu(self.c1(x))
    x = eqx.nn.MaxPool2d(2, 2)(x)
    x = jax.nn.relu(self.c2(x))
    return self.fc(x.mean((1, 2)))


def pure(p, x):
  """The same network as a plain function of a params dict."""
  dn = ("NHWC", "HWIO", "NHWC")
  x = jax.lax.conv_general_dilated(x, p["k1"], (1, 1), ((1, 1), (1, 1)),
                                   dimension_numbers=dn) + p["b1"]
  x = jax.nn.relu(x)
  x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1),
                            (1, 2, 2, 1), "VALID")
  x = jax.lax.conv_general_dilated(x, p["k2"], (2, 2), ((1, 1), (1, 1)),
                                   dimension_numbers=dn) + p["b2"]
  x = jnp.maximum(x, 0.0)
  return x.mean((1, 2)) @ p["w"] + p["b"]


def _kinds(w):
  """(model, variables) for each of the four kinds, same weights."""
  linen = Linen()
  lv = {"params": {"c1": {"kernel": w["k1"], "bias": w["b1"]},
                   "c2": {"kernel": w["k2"], "bias": w["b2"]},
                   "fc": {"kernel": w["w"], "bias": w["b"]}}}
  lv = jax.tree.map(jnp.asarray, lv)
  return {"linen": (linen, lv), "nnx": (NNX(w), None),
          "equinox": (Eqx(w), None),
          "function": (pure, jax.tree.map(jnp.asarray, w))}


def _input(seed=1, n=2):
  return jnp.asarray(np.random.default_rng(seed).normal(size=(n, H, W, 3)))


COMPOSITES = ("epsilon_plus_flat", "epsilon_plus", "epsilon_alpha2_beta1",
              "epsilon_alpha2_beta1_flat", "epsilon_gamma_box", "sr_paper")


def test_model_kinds_and_names(x64):
  kinds = _kinds(_weights())
  x = _input()
  want = pure(jax.tree.map(jnp.asarray, _weights()), x)
  for kind, (model, variables) in kinds.items():
    fn, params = models.as_function(model, variables)
    assert fn.kind == kind
    np.testing.assert_allclose(fn(params, x), want, rtol=1e-12)
    g = graph.trace(fn, params, x, kind=fn.kind)
    kinds_found = [(l.kind, l.first) for l in g.layers.values()]
    assert kinds_found == [("conv", True), ("max_pool", False),
                           ("conv", False), ("pool", False),
                           ("dense", False)], (kind, kinds_found)
  g = graph.trace(*models.as_function(*kinds["linen"]), x, kind="linen")
  assert [l.name for l in g.layers.values()][::2] == ["c1", "c2", "fc"]
  assert "c1/relu" in g.taps and "c2/relu" in g.taps


@pytest.mark.parametrize("composite", COMPOSITES)
def test_every_kind_gives_the_same_relevance(x64, composite):
  x = _input()
  maps = {kind: np.asarray(lrp.relevance(m, v, x, composite=composite))
          for kind, (m, v) in _kinds(_weights()).items()}
  ref = maps["function"]
  assert ref.dtype == np.float64
  for kind, r in maps.items():
    assert np.max(np.abs(r - ref)) <= 1e-6 * np.max(np.abs(ref)), kind


@pytest.mark.parametrize("method, options", [
    ("gradient", {}), ("input_x_gradient", {}),
    ("smoothgrad", {"key": 3, "samples": 3}),
    ("integrated_gradients", {"steps": 4}),
])
def test_every_kind_gives_the_same_gradient_maps(x64, method, options):
  x = _input()
  fn = attribution.get_method(method)
  maps = {kind: np.asarray(fn(m, v, x, target=[1, 3], **options))
          for kind, (m, v) in _kinds(_weights()).items()}
  for kind, r in maps.items():
    np.testing.assert_allclose(r, maps["function"], rtol=1e-9, atol=1e-12,
                               err_msg=kind)


def _matrix_reference(w, x, first, conv, dense, pool):
  """The float64 matrix-form LRP of the network, with the mean as a pooling
  layer of weights 1/n (zennit's and Captum's treatment of average pooling),
  max-pooling winner-takes-all."""
  m1, _ = lrp_matrix.conv_matrix(w["k1"], (H, W), (1, 1), ((1, 1), (1, 1)))
  m2, (oh, ow) = lrp_matrix.conv_matrix(w["k2"], (H // 2, W // 2), (2, 2),
                                        ((1, 1), (1, 1)))
  b1, b2 = np.tile(w["b1"], H * W), np.tile(w["b2"], oh * ow)
  mean = np.tile(np.eye(C2), (oh * ow, 1)) / (oh * ow)
  out = []
  for xi in np.asarray(x, np.float64):
    a0 = xi.reshape(-1)
    a1 = np.maximum(a0 @ m1 + b1, 0).reshape(H, W, C1)
    win = a1.reshape(H // 2, 2, W // 2, 2, C1).transpose(0, 2, 4, 1, 3
                                                         ).reshape(
                                                             H // 2, W // 2,
                                                             C1, 4)
    a2 = win.max(-1).reshape(-1)
    a3 = np.maximum(a2 @ m2 + b2, 0)
    a4 = a3 @ mean
    logits = a4 @ w["w"] + w["b"]
    r = np.zeros(K)
    r[logits.argmax()] = logits.max()
    r = lrp_matrix.lrp(x=a4, m=w["w"], b=w["b"], r=r, **dense)
    r = lrp_matrix.lrp(x=a3, m=mean, b=np.zeros(C2), r=r, **pool)
    r = lrp_matrix.lrp(x=a2, m=m2, b=b2, r=r, **conv).reshape(
        H // 2, W // 2, C1)
    r1 = np.zeros((H // 2, W // 2, C1, 4))
    np.put_along_axis(r1, win.argmax(-1)[..., None], r[..., None], axis=-1)
    r1 = r1.reshape(H // 2, W // 2, C1, 2, 2).transpose(0, 3, 1, 4, 2)
    out.append(lrp_matrix.lrp(x=a0, m=m1, b=b1, r=r1.reshape(-1), **first))
  return np.stack(out).reshape(x.shape)


REFERENCE = {  # composite -> matrix-form rules of (first, conv, dense)
    "epsilon_plus_flat": (dict(rule="flat"), dict(rule="alpha_beta", alpha=1.0, beta=0.0),
                          dict(rule="epsilon", eps=1e-6)),
    "epsilon_plus": (dict(rule="alpha_beta", alpha=1.0, beta=0.0), dict(rule="alpha_beta", alpha=1.0, beta=0.0),
                     dict(rule="epsilon", eps=1e-6)),
    "epsilon_alpha2_beta1": (dict(rule="alpha_beta", alpha=2.0, beta=1.0),
                             dict(rule="alpha_beta", alpha=2.0, beta=1.0),
                             dict(rule="epsilon", eps=1e-6)),
}


@pytest.mark.parametrize("composite", sorted(REFERENCE))
def test_user_written_model_matches_matrix_reference(x64, composite):
  """Bare relu, nn.max_pool and x.mean((1, 2)): the mean is a layer whose
  relevance goes to each position in proportion to its contribution."""
  w = _weights()
  x = _input()
  model, variables = _kinds(w)["linen"]
  got = np.asarray(lrp.relevance(model, variables, x, composite=composite))
  first, conv, dense = REFERENCE[composite]
  want = _matrix_reference(w, x, first, conv, dense,
                           dict(rule="epsilon", eps=1e-6))
  assert np.max(np.abs(got - want)) <= 1e-6 * np.max(np.abs(want))


def test_bare_relu_equals_max_zero(x64):
  w = jax.tree.map(jnp.asarray, _weights())

  def with_relu(p, x):
    x = jax.lax.conv_general_dilated(x, p["k1"], (1, 1), "SAME",
                                     dimension_numbers=("NHWC", "HWIO",
                                                        "NHWC")) + p["b1"]
    x = jax.nn.relu(x)
    return x.mean((1, 2)) @ p["w"][:C1] + p["b"]

  def with_max(p, x):
    x = jax.lax.conv_general_dilated(x, p["k1"], (1, 1), "SAME",
                                     dimension_numbers=("NHWC", "HWIO",
                                                        "NHWC")) + p["b1"]
    x = jnp.maximum(0.0, x)
    return x.mean((1, 2)) @ p["w"][:C1] + p["b"]

  x = _input()
  for composite in COMPOSITES:
    np.testing.assert_array_equal(
        lrp.relevance(with_relu, w, x, composite=composite),
        lrp.relevance(with_max, w, x, composite=composite))
  taps = backward.layers(with_relu, w, x)
  assert [t for t in taps if t.endswith("relu")] == ["k1/relu"]


def test_unsupported_primitive_is_named():
  w = jax.tree.map(jnp.asarray, _weights())

  def sorted_model(p, x):
    x = jnp.sort(x.reshape(x.shape[0], -1), axis=-1)[:, :C2]
    return x @ p["w"] + p["b"]

  with pytest.raises(ValueError, match=r"applies `sort` .* on the path from "
                     r"the input to the logits"):
    lrp.relevance(sorted_model, w, _input().astype(jnp.float32))


def test_residual_sum_splits_in_proportion():
  """z = a + b of two activations: R_a = a / z R, R_b = b / z R."""
  def model(p, x):
    a = x.reshape(x.shape[0], -1) @ p["w1"]
    b = x.reshape(x.shape[0], -1) @ p["w2"]
    return a + b

  r = np.random.default_rng(0)
  p = {"w1": jnp.asarray(r.normal(size=(3, 2)), jnp.float32),
       "w2": jnp.asarray(r.normal(size=(3, 2)), jnp.float32)}
  x = jnp.asarray(r.normal(size=(1, 1, 1, 3)), jnp.float32)
  got = np.asarray(lrp.relevance(model, p, x, target=0, composite=lrp.Composite(
      "zero", lrp.layer_map(rules.zero(), rules.zero()))))
  xv = np.asarray(x, np.float64).reshape(-1)
  a = xv * np.asarray(p["w1"], np.float64)[:, 0]
  b = xv * np.asarray(p["w2"], np.float64)[:, 0]
  np.testing.assert_allclose(got.reshape(-1), a + b, rtol=1e-5, atol=1e-6)


def test_variables_checked_per_kind():
  with pytest.raises(ValueError, match=r"`variables` \(=dict\) must be None "
                     r"for an NNX module"):
    models.as_function(NNX(_weights()), {})
  with pytest.raises(ValueError, match=r"`variables` \(=None\) must be given "
                     r"for a linen module"):
    models.as_function(Linen(), None)
  with pytest.raises(ValueError, match=r"`model` \(=int\) must be a Flax "
                     r"linen Module"):
    models.as_function(3, None)


def test_non_finite_input_is_refused():
  x = np.array(_input(), np.float32)
  x[0, 1, 2, 0] = np.nan
  x[1, 0, 0, 1] = np.inf
  model, variables = _kinds(_weights())["function"]
  variables = jax.tree.map(lambda a: a.astype(jnp.float32), variables)
  for method in ("lrp", "gradient"):
    with pytest.raises(ValueError, match=r"`x` has 2 non-finite values \(NaN "
                       r"or inf\) of 384"):
      attribution.get_method(method)(model, variables, x)


def test_traced_bad_target_gives_nan_not_zeros():
  model, variables = _kinds(_weights())["function"]
  variables = jax.tree.map(lambda a: a.astype(jnp.float32), variables)
  x = _input().astype(jnp.float32)
  fn = jax.jit(lambda t: lrp.relevance(model, variables, x, target=t))
  r = np.asarray(fn(jnp.array([1, 99])))
  assert np.all(np.isfinite(r[0])) and np.all(np.isnan(r[1]))
