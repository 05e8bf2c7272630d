"""Tests of sr_jax.maps: the one min-max scaling and the LRP map reduction."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sr_jax import maps


def _reference(x, axes):
  """Min-max of each slice over `axes`, one slice at a time (float64)."""
  x = np.asarray(x, np.float64)
  keep = [a for a in range(x.ndim) if a not in np.arange(x.ndim)[list(axes)]]
  out = np.empty_like(x)
  for idx in np.ndindex(*[x.shape[a] for a in keep]):
    sl = [slice(None)] * x.ndim
    for a, i in zip(keep, idx):
      sl[a] = i
    plane = x[tuple(sl)]
    lo, hi = plane.min(), plane.max()
    out[tuple(sl)] = 0.0 if hi == lo else (plane - lo) / (hi - lo)
  return out


def test_normalize_is_the_former_metrics_normalize(rng):
  m = rng.normal(size=(7, 5)) * 3.0 + 1.0
  low, high = m.min(), m.max()
  got = maps.normalize(m)
  assert got.dtype == np.float64
  np.testing.assert_array_equal(got, (m - low) / (high - low))  # bit for bit
  np.testing.assert_array_equal(maps.normalize(np.full((3, 4), 2.5)), 0.0)
  f32 = maps.normalize(jnp.asarray(m, jnp.float32))
  assert isinstance(f32, np.ndarray) and f32.dtype == np.float64
  assert maps.normalize(np.array([[1, 3], [2, 5]])).tolist() == [
      [0.0, 0.5], [0.25, 1.0]]


def test_normalize_and_lrp_map_errors():
  bad = np.ones((3, 3))
  bad[0, 0] = np.inf
  with pytest.raises(ValueError, match=r"`map` contains 1 NaN or inf"):
    maps.normalize(bad)
  with pytest.raises(ValueError, match=r"`map` \(dtype=bool\) must be a "
                     "numeric array"):
    maps.normalize(np.ones((2, 2), bool))
  with pytest.raises(ValueError, match=r"`relevance` \(shape=\(4,\)\) must be "
                     "HxW or HxWxC"):
    maps.lrp_map(np.ones(4))


@pytest.mark.parametrize("axis", [None, 1, (0, 1), (-3, -2, -1), (-2, -1)])
def test_minmax_numpy_matches_a_slice_by_slice_reference(rng, axis):
  x = rng.normal(size=(2, 4, 5, 3))
  x[1, :, :, 0] = 7.0  # a constant slice for some of the axes
  axes = tuple(range(x.ndim)) if axis is None else np.atleast_1d(axis)
  got = maps.minmax(x, axis=axis)
  assert isinstance(got, np.ndarray)
  np.testing.assert_allclose(got, _reference(x, axes), rtol=0, atol=1e-15)


def test_minmax_jax_is_jittable_and_keeps_the_dtype(rng, x64):
  x = rng.normal(size=(3, 6, 6, 3))
  x[0] = 2.0  # a constant map
  want = _reference(x, (-3, -2, -1))
  fn = jax.jit(lambda a: maps.minmax(a, axis=(-3, -2, -1)))
  got = fn(jnp.asarray(x))
  assert isinstance(got, jax.Array) and got.dtype == jnp.float64
  np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=1e-15)
  f32 = fn(jnp.asarray(x, jnp.float32))
  assert f32.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(f32), want, rtol=0, atol=1e-6)
  grads = jax.grad(lambda a: maps.minmax(a).sum())(jnp.asarray(x[0]))
  assert np.all(np.isfinite(np.asarray(grads)))  # constant input: no NaN


def test_lrp_map_sums_abs_channels_then_scales(rng):
  r = rng.normal(size=(5, 6, 3))
  plane = np.abs(r).sum(-1)
  np.testing.assert_array_equal(maps.lrp_map(r), maps.normalize(plane))
  np.testing.assert_array_equal(maps.lrp_map(plane), maps.normalize(plane))
