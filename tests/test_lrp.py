"""`sr_jax.lrp.relevance` on whole networks: a float64 layer-by-layer reference,
conservation, targets, jit behaviour, BatchNorm folding and error messages."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sr_jax import lrp
from sr_jax.lrp import rules
from sr_jax.models import vgg_tiny
from sr_jax.models.layers import AdaptiveAvgPool2d, MaxPool2d, flatten_nchw
from sr_jax.core.backward import backward
from tests.reference import lrp_matrix

TRACES = []  # one entry per trace of SmallNet.__call__


class SmallNet(nn.Module):
  """Every layer type the composites know, in a net defined here."""

  @nn.compact
  def __call__(self, x):
    TRACES.append(x.shape)
    x = nn.relu(nn.Conv(4, (3, 3), padding=((1, 1), (1, 1)), name="conv1")(x))
    x = MaxPool2d((2, 2), (2, 2), name="pool")(x)
    x = nn.relu(nn.Conv(6, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)),
                        name="conv2")(x))
    x = AdaptiveAvgPool2d((3, 3), name="avgpool")(x)  # 4x4 -> 3x3, overlapping
    x = nn.relu(nn.Dense(8, name="fc1")(flatten_nchw(x)))
    return nn.Dense(5, name="fc2")(x)


def _small_net(seed=0, zero_bias=False):
  model = SmallNet()
  rng = np.random.default_rng(seed)
  params = model.init(jax.random.PRNGKey(seed), jnp.zeros((1, 16, 16, 3)))
  params = jax.tree_util.tree_map_with_path(
      lambda p, a: jnp.asarray(
          0.0 * a if zero_bias else rng.normal(size=a.shape) * 0.1, a.dtype)
      if p[-1].key == "bias" else a, params)
  x = jnp.asarray(rng.normal(size=(2, 16, 16, 3)), jnp.float32)
  return model, params, x


def _reference_relevance(params, x, first, conv, dense, pool):
  """SmallNet's relevance in float64, layer by layer, by the matrix formulas.

  `first`, `conv`, `dense`, `pool` are keyword dicts for `lrp_matrix.lrp`.
  """
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params["params"])
  m1, _ = lrp_matrix.conv_matrix(p["conv1"]["kernel"], (16, 16), (1, 1),
                                 ((1, 1), (1, 1)))
  m2, _ = lrp_matrix.conv_matrix(p["conv2"]["kernel"], (8, 8), (2, 2),
                                 ((1, 1), (1, 1)))
  b1, b2 = np.tile(p["conv1"]["bias"], 256), np.tile(p["conv2"]["bias"], 16)
  mp = np.einsum("hi,wj,cd->hwcijd", lrp_matrix.pool_matrix(4, 3),
                 lrp_matrix.pool_matrix(4, 3), np.eye(6)).reshape(96, 54)
  chw = np.arange(54).reshape(3, 3, 6).transpose(2, 0, 1).reshape(-1)
  out = []
  for xi in np.asarray(x, np.float64):
    a0 = xi.reshape(-1)
    a1 = np.maximum(a0 @ m1 + b1, 0).reshape(16, 16, 4)
    windows = a1.reshape(8, 2, 8, 2, 4).transpose(0, 2, 4, 1, 3).reshape(
        8, 8, 4, 4)
    win = windows.argmax(-1)
    a2 = windows.max(-1).reshape(-1)
    a3 = np.maximum(a2 @ m2 + b2, 0)
    a4 = a3 @ mp
    a5 = a4[chw]
    a6 = np.maximum(a5 @ p["fc1"]["kernel"] + p["fc1"]["bias"], 0)
    logits = a6 @ p["fc2"]["kernel"] + p["fc2"]["bias"]
    r = np.zeros(5)
    r[logits.argmax()] = logits.max()
    r = lrp_matrix.lrp(x=a6, m=p["fc2"]["kernel"], b=p["fc2"]["bias"], r=r,
                       **dense)
    r = lrp_matrix.lrp(x=a5, m=p["fc1"]["kernel"], b=p["fc1"]["bias"], r=r,
                       **dense)
    r4 = np.empty(54)
    r4[chw] = r
    r = lrp_matrix.lrp(x=a3, m=mp, b=np.zeros(54), r=r4, **pool)
    r = lrp_matrix.lrp(x=a2, m=m2, b=b2, r=r, **conv).reshape(8, 8, 4)
    r1 = np.zeros((8, 8, 4, 4))  # max-pooling: all to the winner
    np.put_along_axis(r1, win[..., None], r[..., None], axis=-1)
    r1 = r1.reshape(8, 8, 4, 2, 2).transpose(0, 3, 1, 4, 2).reshape(-1)
    out.append(lrp_matrix.lrp(x=a0, m=m1, b=b1, r=r1, **first))
  return np.stack(out).reshape(x.shape)


LOW, HIGH = np.array([-2.0, -1.5, -1.0]), np.array([2.0, 2.5, 1.5])
EPS = dict(rule="epsilon", eps=1e-6)
REFERENCE_RULES = {
    "epsilon_plus_flat": (dict(rule="flat"), dict(rule="alpha_beta"), EPS),
    "epsilon_plus": (dict(rule="alpha_beta"),) * 2 + (EPS,),
    "epsilon_alpha2_beta1": (dict(rule="alpha_beta", alpha=2.0, beta=1.0),) * 2
                            + (EPS,),
    "epsilon_gamma_box": (dict(rule="zbox", low=np.tile(LOW, 256),
                               high=np.tile(HIGH, 256), zero_bias=True),
                          dict(rule="gamma", gamma=0.25), EPS),
    "sr_paper": (dict(rule="epsilon", eps=1e-9),) * 2 + (
        dict(rule="alpha_beta", zero_bias=True, stabilizer=1e-9),),
}


@pytest.mark.parametrize("name", sorted(REFERENCE_RULES))
def test_small_net_matches_layerwise_reference(name):
  model, params, x = _small_net()
  kwargs = dict(low=LOW, high=HIGH) if name == "epsilon_gamma_box" else {}
  composite = lrp.get_composite(name, **kwargs)
  got, logits = lrp.relevance(model, params, x, composite=composite,
                              return_logits=True)
  np.testing.assert_allclose(logits, model.apply(params, x), atol=1e-6)
  first, conv, dense = REFERENCE_RULES[name]
  pool = dict(rule="epsilon", eps=1e-9 if name == "sr_paper" else 1e-6)
  want = _reference_relevance(params, x, first, conv, dense, pool)
  assert got.shape == x.shape and got.dtype == jnp.float32
  assert np.max(np.abs(got - want)) <= 1e-5 * np.max(np.abs(want))


CONSERVATIVE = {
    "zero": lrp.Composite("zero", lrp.layer_map(
        rules.zero(), rules.zero(), pool=rules.zero())),
    "zplus_flat": lrp.Composite("zplus_flat", lrp.layer_map(
        rules.zplus(stabilizer=0.0), rules.zero(), first=rules.flat(),
        pool=rules.zero())),
    "alpha2_beta1": lrp.Composite("alpha2_beta1", lrp.layer_map(
        rules.alpha_beta(2.0, 1.0, stabilizer=0.0), rules.zero(),
        pool=rules.zero())),
}


@pytest.mark.parametrize("name", sorted(CONSERVATIVE))
def test_zero_bias_network_conserves_the_target_logit(name):
  model, params, x = _small_net(zero_bias=True)
  r, logits = lrp.relevance(model, params, x, composite=CONSERVATIVE[name],
                            return_logits=True)
  np.testing.assert_allclose(r.reshape(2, -1).sum(1), logits.max(1),
                             rtol=1e-5)


def test_bias_residual_is_reported():
  """With biases, relevance leaks; print the share for the record."""
  model, params, x = _small_net()
  for name in sorted(lrp.COMPOSITES):
    r, logits = lrp.relevance(model, params, x, composite=name,
                              return_logits=True)
    share = np.asarray(r.reshape(2, -1).sum(1) / logits.max(1))
    print(f"{name}: sum(R) / logit = {np.round(share, 4)}")
    assert np.all(np.isfinite(share))


def test_targets_none_int_and_per_example():
  model, params, x = _small_net()
  logits = model.apply(params, x)
  r_none = lrp.relevance(model, params, x)
  r_arg = lrp.relevance(model, params, x, target=np.asarray(logits.argmax(1)))
  np.testing.assert_array_equal(r_none, r_arg)
  r_pair = lrp.relevance(model, params, x, target=[3, 1])
  for i, t in enumerate([3, 1]):
    r_one = lrp.relevance(model, params, x[i:i + 1], target=t)
    np.testing.assert_allclose(r_pair[i:i + 1], r_one, rtol=1e-5, atol=1e-7)


def test_no_recompilation_on_second_call():
  model, params, x = _small_net()
  x = jnp.concatenate([x, x[:1]])  # a batch size no other test uses
  TRACES.clear()
  for target in (None, 2, [1, 3, 4], np.array([0, 0, 0])):
    lrp.relevance(model, params, x, target=target)
  assert len(TRACES) == 1
  # The model is traced once per shape: a second composite reuses the
  # traced graph and compiles one more backward pass; a fresh but equal
  # composite (array bounds) compiles nothing new.
  before = backward._cache_size()  # pylint: disable=protected-access
  for _ in range(2):
    lrp.relevance(model, params, x,
                  composite=lrp.get_composite("epsilon_gamma_box", low=LOW,
                                              high=HIGH))
  assert backward._cache_size() == before + 1  # pylint: disable=protected-access
  assert len(TRACES) == 1


def test_works_under_outer_jit():
  model, params, x = _small_net()
  fn = jax.jit(lambda p, x, t: lrp.relevance(
      model, p, x, target=t, composite="epsilon_alpha2_beta1",
      return_logits=True))
  r, logits = fn(params, x, jnp.array([4, 0]))
  want = lrp.relevance(model, params, x, target=[4, 0],
                       composite="epsilon_alpha2_beta1")
  np.testing.assert_allclose(r, want, rtol=1e-6, atol=1e-8)
  np.testing.assert_allclose(logits, model.apply(params, x), atol=1e-6)


def test_path_and_first_layer_predicates():
  model, params, x = _small_net()
  by_path = lrp.Composite("by_path", (
      (lrp.path_matches("conv1"), rules.flat()),) + lrp.layer_map(
          rules.zplus(), rules.epsilon(1e-6)))
  np.testing.assert_array_equal(
      lrp.relevance(model, params, x, composite=by_path),
      lrp.relevance(model, params, x, composite="epsilon_plus_flat"))


def _bn_tiny(rng, zero_bias=False):
  model = vgg_tiny(batch_norm=True)
  v = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))
  v = jax.tree_util.tree_map_with_path(
      lambda p, a: jnp.asarray(rng.uniform(0.5, 1.5, a.shape)
                               if p[-1].key in ("var", "scale") else
                               rng.normal(size=a.shape) * 0.2, a.dtype)
      if p[-1].key in ("var", "scale", "mean") or (
          p[-1].key == "bias" and not zero_bias) else a, v)
  if zero_bias:  # BN shift so that the folded bias is zero too
    for name, stats in v["batch_stats"].items():
      a = v["params"][name]["scale"] / np.sqrt(stats["var"] + 1e-5)
      v["params"][name]["bias"] = stats["mean"] * a
  return model, v


def test_batchnorm_is_folded_into_the_conv(rng):
  model, v = _bn_tiny(rng)
  plain = vgg_tiny()
  pv = plain.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))
  convs = sorted((n for n in pv["params"] if n.startswith("features")),
                 key=lambda n: int(n.split("_")[1]))
  for name, stats in v["batch_stats"].items():  # fold by hand, in NumPy
    index = int(name.split("_")[1])
    conv = f"features_{index - 1}"  # the conv before, in the BN model
    plain_conv = convs[sorted(v["batch_stats"], key=lambda n: int(
        n.split("_")[1])).index(name)]
    bn = {k: np.asarray(a, np.float64) for k, a in v["params"][name].items()}
    a = bn["scale"] / np.sqrt(np.asarray(stats["var"], np.float64) + 1e-5)
    k = np.asarray(v["params"][conv]["kernel"], np.float64)
    b = np.asarray(v["params"][conv]["bias"], np.float64)
    pv["params"][plain_conv] = {
        "kernel": jnp.asarray(k * a, jnp.float32),
        "bias": jnp.asarray((b - np.asarray(stats["mean"])) * a + bn["bias"],
                            jnp.float32)}
  for name in ("classifier_0", "classifier_3", "classifier_6"):
    pv["params"][name] = v["params"][name]
  x = jnp.asarray(rng.normal(size=(2, 32, 32, 3)), jnp.float32)
  r, logits = lrp.relevance(model, v, x, composite="epsilon_plus_flat",
                            return_logits=True)
  np.testing.assert_allclose(logits, model.apply(v, x), rtol=1e-5, atol=1e-6)
  want = lrp.relevance(plain, pv, x, composite="epsilon_plus_flat",
                       target=np.asarray(logits.argmax(1)))
  assert np.max(np.abs(r - want)) <= 1e-5 * np.max(np.abs(want))


def test_batchnorm_network_conserves_with_zero_bias(rng):
  model, v = _bn_tiny(rng, zero_bias=True)
  x = jnp.asarray(rng.normal(size=(2, 32, 32, 3)), jnp.float32)
  for composite in CONSERVATIVE.values():
    r, logits = lrp.relevance(model, v, x, composite=composite,
                              return_logits=True)
    np.testing.assert_allclose(r.reshape(2, -1).sum(1), logits.max(1),
                               rtol=1e-4)


class _InputNorm(nn.Module):
  norm: type = nn.BatchNorm

  @nn.compact
  def __call__(self, x):
    if self.norm is nn.BatchNorm:
      x = nn.BatchNorm(use_running_average=True, name="norm")(x)
    else:
      x = self.norm(name="norm")(x)
    return nn.Dense(3, name="head")(x.reshape(x.shape[0], -1))


@pytest.mark.parametrize("norm, match", [
    (nn.LayerNorm, r"No rule covers the parameters of `norm`: they enter "
                   r"`(mul|add)` \(at `_InputNorm/norm`\) outside a conv or "
                   r"dense layer"),
    (nn.BatchNorm, r"No rule covers the parameters of `norm`: .*cannot be "
                   r"folded into the layer before it"),
])
def test_uncovered_layer_with_parameters_raises(norm, match):
  model = _InputNorm(norm)
  x = jnp.ones((1, 4, 4, 3))
  v = model.init(jax.random.PRNGKey(0), x)
  with pytest.raises(ValueError, match=match):
    lrp.relevance(model, v, x)


@pytest.mark.parametrize("kwargs, match", [
    (dict(target=-1), r"`target` \(=-1\) must be None \(each example's "
                      r"argmax\), an int >= 0, or one such int per example "
                      r"\(shape \(2,\)\)"),
    (dict(target=5), r"`target` \(=5\) must be None \(each example's "
                     r"argmax\), an int in \[0, 5\), or one such int per "
                     r"example \(shape \(2,\)\)"),
    (dict(target=[1, 2, 3]), r"`target` \(=\[1, 2, 3\]\) must be None"),
    (dict(target=1.5), r"`target` \(=1.5\) must be None"),
    (dict(composite="nope"),
     r"Unknown `composite` \(='nope'\); known composites: "
     r"epsilon_alpha2_beta1, epsilon_alpha2_beta1_flat, epsilon_gamma_box, "
     r"epsilon_plus, epsilon_plus_flat, sr_paper"),
    (dict(composite=lrp.Composite("pass", lrp.layer_map(
        rules.zplus(), rules.pass_()))),
     r"Rule `pass\(\)` of layer `fc1` \(dense\) passes relevance through, "
     r"but the layer maps shape \(2, 54\) to \(2, 8\)"),
])
def test_invalid_arguments_raise(kwargs, match):
  model, params, x = _small_net()
  with pytest.raises(ValueError, match=match):
    lrp.relevance(model, params, x, **kwargs)


def test_get_composite_errors_and_box_bounds():
  with pytest.raises(ValueError, match=r"Composite arguments \['epsilon'\] "
                     r"apply to named composites only"):
    lrp.get_composite(lrp.get_composite("epsilon_plus"), epsilon=0.1)
  with pytest.raises(ValueError, match=r"Give both `low` \(=0\) and `high` "
                     r"\(=None\)"):
    lrp.get_composite("epsilon_gamma_box", low=0)
  low, high = lrp.box_bounds()
  mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
  np.testing.assert_allclose(low, -mean / std, rtol=1e-6)
  np.testing.assert_allclose(high, (1 - mean) / std, rtol=1e-6)
  face_low, _ = lrp.box_bounds("vgg_face")
  np.testing.assert_allclose(face_low, [-129.186279296875, -104.76238250732422,
                                        -93.59396362304688], rtol=1e-6)
  assert lrp.get_composite("epsilon_gamma_box") == lrp.get_composite(
      "epsilon_gamma_box", low=low, high=high)


def test_composite_with_lists_still_hashes():
  entries = [list(e) for e in lrp.layer_map(rules.zplus(), rules.epsilon())]
  composite = lrp.get_composite(lrp.Composite("lists", entries))
  assert hash(composite) == hash(lrp.Composite("lists", lrp.layer_map(
      rules.zplus(), rules.epsilon())))
