"""Test-wide settings: strict dtype promotion, float32 default, and helpers."""

import os

# sr_jax gives JAX one CPU device per core (sr_jax.runtime); the tests ask
# for two on any machine, so that the code that splits work over devices
# (saliency split by query or by image, sharded batches) runs and is compared
# with one device. Subprocess tests that need other counts set them.
os.environ.setdefault("SR_JAX_CPU_DEVICES", "2")

import jax  # pylint: disable=wrong-import-position
import numpy as np
import pytest

jax.config.update("jax_numpy_dtype_promotion", "strict")


@pytest.fixture
def rng():
  """A NumPy generator with a fixed seed, fresh for every test."""
  return np.random.default_rng(0)


@pytest.fixture
def x64():
  """float64 for the duration of one test (exact comparisons)."""
  previous = jax.config.jax_enable_x64
  jax.config.update("jax_enable_x64", True)
  yield
  jax.config.update("jax_enable_x64", previous)
