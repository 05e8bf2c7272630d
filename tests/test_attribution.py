"""Gradient-family methods: analytic functions, completeness, batching."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sr_jax import attribution


class Quadratic(nn.Module):
  """logit_c = sum_i w_ci * x_i^2, with known gradient 2 w_c x."""

  @nn.compact
  def __call__(self, x):
    w = self.param("w", nn.initializers.normal(1.0), (x[0].size, 3))
    return (x.reshape(x.shape[0], -1) ** 2) @ w


@pytest.fixture
def quad():
  model = Quadratic()
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 4, 4, 3)),
                  jnp.float32)
  return model, model.init(jax.random.PRNGKey(0), x), x


def test_gradient_matches_analytic(quad):
  model, variables, x = quad
  w = np.asarray(variables["params"]["w"], np.float64)
  g = attribution.gradient(model, variables, x, target=jnp.array([0, 2]))
  xf = np.asarray(x, np.float64).reshape(2, -1)
  want = np.stack([2 * w[:, 0] * xf[0], 2 * w[:, 2] * xf[1]]).reshape(x.shape)
  np.testing.assert_allclose(np.asarray(g), want, rtol=1e-5, atol=1e-6)


def test_default_target_is_argmax(quad):
  model, variables, x = quad
  t = jnp.argmax(model.apply(variables, x), -1)
  np.testing.assert_array_equal(
      attribution.gradient(model, variables, x),
      attribution.gradient(model, variables, x, target=t))


def test_integrated_gradients_completeness_and_exactness(quad):
  model, variables, x = quad
  ig = attribution.integrated_gradients(model, variables, x, target=1,
                                        steps=32)
  logits = model.apply(variables, x)
  # f(0) = 0 here, so the attributions must sum to the logit itself.
  np.testing.assert_allclose(np.asarray(ig.reshape(2, -1).sum(-1)),
                             np.asarray(logits[:, 1]), rtol=1e-4)
  # For a quadratic, the path integral is exact: IG = w x^2 per element.
  w = np.asarray(variables["params"]["w"], np.float64)[:, 1]
  want = (w * np.asarray(x, np.float64).reshape(2, -1) ** 2).reshape(x.shape)
  np.testing.assert_allclose(np.asarray(ig), want, rtol=1e-3, atol=1e-5)


def test_smoothgrad_zero_noise_equals_gradient_and_is_keyed(quad):
  model, variables, x = quad
  key = jax.random.PRNGKey(3)
  g = attribution.gradient(model, variables, x)
  sg0 = attribution.smoothgrad(model, variables, x, key=key, noise_level=0.0,
                               samples=3)
  np.testing.assert_allclose(np.asarray(sg0), np.asarray(g), rtol=1e-6)
  a = attribution.smoothgrad(model, variables, x, key=key, samples=4)
  b = attribution.smoothgrad(model, variables, x, key=key, samples=4)
  c = attribution.smoothgrad(model, variables, x, key=jax.random.PRNGKey(4),
                             samples=4)
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c)


def test_batch_equals_single(quad):
  model, variables, x = quad
  both = attribution.input_times_gradient(model, variables, x, target=2)
  one = attribution.input_times_gradient(model, variables, x[1:], target=2)
  np.testing.assert_allclose(np.asarray(both[1:]), np.asarray(one), rtol=1e-6)


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(target=jnp.array([0, 1, 2])),
     r"`target` \(=\[0, 1, 2\]\) must be None \(each example's argmax\), "
     r"an int >= 0, or one such int per example \(shape \(2,\)\)"),
    (dict(target=7), r"`target` \(=7\) must be None \(each example's "
                     r"argmax\), an int in \[0, 3\), or one such int"),
    (dict(target=0.5), r"`target` \(=0.5\) must be None"),
])
def test_bad_target(quad, kwargs, pattern):
  model, variables, x = quad
  with pytest.raises(ValueError, match=pattern):
    attribution.gradient(model, variables, x, **kwargs)


def test_bad_options(quad):
  model, variables, x = quad
  with pytest.raises(ValueError, match=r"`steps` \(=0\) must be >= 1"):
    attribution.integrated_gradients(model, variables, x, steps=0)
  with pytest.raises(ValueError, match=r"`samples` \(=0\) must be >= 1"):
    attribution.smoothgrad(model, variables, x, key=jax.random.PRNGKey(0),
                           samples=0)
