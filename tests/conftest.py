"""Test-wide settings: strict dtype promotion, float32 default, and helpers."""

import jax
import numpy as np
import pytest

jax.config.update("jax_numpy_dtype_promotion", "strict")


@pytest.fixture
def rng():
  """A NumPy generator with a fixed seed, fresh for every test."""
  return np.random.default_rng(0)
