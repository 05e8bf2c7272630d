"""Percentile bootstrap confidence intervals for scores over images.

References:
  Efron and Tibshirani (1993), "An introduction to the bootstrap", ch. 13
  (the percentile interval).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import numpy as np

from sr_jax.metrics._common import as_key

__all__ = ["BootstrapCI", "bootstrap_ci"]


class BootstrapCI(NamedTuple):
  """A statistic of the values and its percentile bootstrap interval."""
  estimate: float  # the statistic of the values themselves
  low: float  # the (1 - level) / 2 quantile of the resampled statistics
  high: float  # the (1 + level) / 2 quantile


def bootstrap_ci(
    values: jax.typing.ArrayLike,
    *,
    key: jax.typing.ArrayLike | None = None,
    seed: int | None = None,
    n: int = 1000,
    level: float = 0.95,
    statistic: Callable[[np.ndarray], np.ndarray] = np.mean,
) -> BootstrapCI:
  """The percentile bootstrap interval of `statistic(values)`.

  `n` resamples of the values, each of their size and drawn with replacement
  (indices from `jax.random.randint`); the interval is the (1 - level) / 2
  and (1 + level) / 2 quantiles of the resampled statistics (NumPy's linear
  interpolation). Give exactly one of `key` and `seed`; `seed=s` is
  `key=jax.random.key(s)`.

  Args:
    values: (N,) finite scores, one per image.
    key: a JAX PRNG key.
    seed: an int seed, instead of `key`.
    n: the number of resamples (>= 1).
    level: the interval's coverage, in (0, 1); 0.95 by default.
    statistic: reduces an (n, N) array along axis 1 (`axis=1` is passed),
      like `np.mean` or `np.median`.

  Returns:
    `BootstrapCI(estimate, low, high)`.

  Raises:
    ValueError: for empty or non-finite values, both or neither of `key` and
      `seed`, or a bad `n` or `level`.

  Examples:
    >>> bootstrap_ci([0.5, 0.5, 0.5], seed=0)
    BootstrapCI(estimate=0.5, low=0.5, high=0.5)
  """
  v = np.asarray(values, np.float64)
  if v.ndim != 1 or v.size == 0 or not np.all(np.isfinite(v)):
    raise ValueError(
        f"`values` (shape={v.shape}) must be a non-empty 1-D array of finite "
        "numbers.")
  if (key is None) == (seed is None):
    raise ValueError("Give exactly one of `key` and `seed` (got "
                     f"key={key!r}, seed={seed!r}).")
  if not (isinstance(n, (int, np.integer)) and n >= 1):
    raise ValueError(f"`n` (={n!r}) must be an integer >= 1.")
  if not 0 < level < 1:
    raise ValueError(f"`level` (={level!r}) must be in (0, 1).")
  rng = as_key(seed if key is None else key, "seed" if key is None else "key")
  idx = np.asarray(jax.random.randint(rng, (n, v.size), 0, v.size))
  stats = np.asarray(statistic(v[idx], axis=1), np.float64)
  low, high = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])
  return BootstrapCI(float(statistic(v)), float(low), float(high))
