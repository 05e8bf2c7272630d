"""Every registered attribution method keeps the one contract: shape, batch
independence, target=None is the argmax, no recompilation, one target
message, and models of every kind."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sr_jax import attribution
from sr_jax.core.backward import target_message

TRACES = []
C = 4


def model(p, x):
  """A small CNN as a plain function: conv, relu, max-pool, conv, relu,
  global mean, dense."""
  TRACES.append(x.shape)
  dn = ("NHWC", "HWIO", "NHWC")
  x = jax.lax.conv_general_dilated(x, p["k1"], (1, 1), "SAME",
                                   dimension_numbers=dn) + p["b1"]
  x = jax.nn.relu(x)
  x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1),
                            (1, 2, 2, 1), "VALID")
  x = jax.lax.conv_general_dilated(x, p["k2"], (1, 1), "SAME",
                                   dimension_numbers=dn) + p["b2"]
  x = jax.nn.relu(x)
  return x.mean((1, 2)) @ p["w"] + p["b"]


@pytest.fixture(scope="module")
def setup():
  r = np.random.default_rng(0)
  p = {"k1": r.normal(size=(3, 3, 3, 6)) * 0.5, "b1": r.normal(size=6) * 0.1,
       "k2": r.normal(size=(3, 3, 6, 8)) * 0.3, "b2": r.normal(size=8) * 0.1,
       "w": r.normal(size=(8, C)), "b": r.normal(size=C) * 0.1}
  p = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), p)
  x = jnp.asarray(r.normal(size=(3, 8, 8, 3)), jnp.float32)
  return p, x


# Options a method needs (a key) or that keep it quick.
OPTIONS = {"smoothgrad": {"key": 0, "samples": 3},
           "integrated_gradients": {"steps": 4}}


def _call(name, p, x, **kw):
  return attribution.get_method(name)(model, p, x, **OPTIONS.get(name, {}),
                                      **kw)


@pytest.mark.parametrize("name", sorted(attribution.METHODS))
def test_contract(setup, name):
  p, x = setup
  logits = model(p, x)
  m = _call(name, p, x)
  assert m.shape == x.shape and m.dtype == x.dtype
  assert np.all(np.isfinite(np.asarray(m)))
  np.testing.assert_array_equal(
      m, _call(name, p, x, target=np.asarray(logits.argmax(-1))))
  t = [1, 3, 0]
  batch = np.asarray(_call(name, p, x, target=t))
  for i in range(len(t)):
    one = np.asarray(_call(name, p, x[i:i + 1], target=t[i]))
    np.testing.assert_allclose(batch[i:i + 1], one, rtol=2e-5,
                               atol=2e-6 * np.abs(batch).max())
  TRACES.clear()
  _call(name, p, x + 1.0, target=[2, 2, 1])
  assert not TRACES, f"{name} traced the model again: {TRACES}"
  with pytest.raises(ValueError, match=re.escape(target_message(C, 3, C))):
    _call(name, p, x, target=C)
  with pytest.raises(ValueError, match=re.escape(
      target_message([0, 1], 3, None))):
    _call(name, p, x, target=[0, 1])


def test_registry_lists_known_names():
  assert {"lrp", "gradient", "input_x_gradient", "smoothgrad",
          "integrated_gradients"} <= set(attribution.METHODS)
  with pytest.raises(ValueError, match=r"Unknown attribution `method` "
                     r"\(='nope'\); known methods: .*gradient.*lrp"):
    attribution.get_method("nope")


def test_smooth_wraps_any_method(setup):
  """SmoothGrad over LRP comes free; zero noise gives the method itself."""
  p, x = setup
  sm = attribution.smooth("lrp", samples=2, noise_level=0.0, key=1)
  np.testing.assert_allclose(sm(model, p, x, target=1),
                             attribution.get_method("lrp")(model, p, x,
                                                           target=1),
                             rtol=1e-5, atol=1e-7)
  a = attribution.smooth("lrp", samples=3, noise_level=0.2, key=1)(
      model, p, x, target=1)
  b = attribution.smooth("lrp", samples=3, noise_level=0.2, key=2)(
      model, p, x, target=1)
  assert not np.allclose(a, b)
  with pytest.raises(ValueError, match=r"`samples` \(=0\) must be >= 1"):
    attribution.smooth("lrp", samples=0, key=0)


@pytest.mark.parametrize("name", sorted(attribution.METHODS))
def test_float64_in_float64_out(x64, name):
  r = np.random.default_rng(1)
  p = {"k1": r.normal(size=(3, 3, 3, 6)) * 0.5, "b1": r.normal(size=6) * 0.1,
       "k2": r.normal(size=(3, 3, 6, 8)) * 0.3, "b2": r.normal(size=8) * 0.1,
       "w": r.normal(size=(8, C)), "b": r.normal(size=C) * 0.1}
  p = jax.tree.map(jnp.asarray, p)
  x = jnp.asarray(r.normal(size=(2, 8, 8, 3)))
  assert x.dtype == jnp.float64
  m = _call(name, p, x)
  assert m.dtype == jnp.float64 and np.all(np.isfinite(np.asarray(m)))
