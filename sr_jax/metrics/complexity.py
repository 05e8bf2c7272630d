"""Complexity of a map: how concentrated its |values| are.

References:
  Chalasani, Chen, Chowdhury, Wu, Jha (2020), "Concise explanations of neural
  networks using adversarial training" (the Gini index of |attribution| as
  its sparseness), after Hurley and Rickard (2009), "Comparing measures of
  sparsity". Bhatt, Weller, Moura (2020), "Evaluating and aggregating
  feature-based model explanations" (complexity: the Shannon entropy of the
  normalized |attribution|).
"""

from __future__ import annotations

import jax
import numpy as np

from sr_jax.metrics._common import Score, as_map, check_plane, per_image

__all__ = ["gini_sparseness", "map_entropy"]


def _gini(m: np.ndarray) -> float:
  c = np.sort(np.abs(m).ravel())
  total = c.sum()
  if total == 0:
    return 0.0
  n = c.size
  k = np.arange(1, n + 1)
  return float(1.0 - 2.0 * np.sum((c / total) * (n - k + 0.5) / n))


def gini_sparseness(map: jax.typing.ArrayLike) -> Score:  # pylint: disable=redefined-builtin
  """The Gini index of |map| (Chalasani et al. 2020; Hurley & Rickard 2009).

  With c_1 <= ... <= c_n the sorted |values| and ||c||_1 their sum,
  G = 1 - 2 * sum_k (c_k / ||c||_1) * (n - k + 1/2) / n. It is 0 for a uniform
  map and (n - 1) / n for a single non-zero pixel; higher = sparser. A map
  that is zero everywhere is taken as uniform: 0.

  Args:
    map: HxW (or NxHxW) values; signs are dropped.

  Returns:
    A float in [0, 1), or an (N,) array for a batch.

  Raises:
    ValueError: if `map` is not a finite HxW or NxHxW array.

  Examples:
    >>> gini_sparseness(np.ones((3, 3))), gini_sparseness(np.eye(1, 4))
    (0.0, 0.75)
  """
  m = as_map(map, "map")
  check_plane(m, "map")
  return per_image(_gini, m)


def _entropy(m: np.ndarray) -> float:
  a = np.abs(m).ravel()
  total = a.sum()
  if total == 0:
    return float(np.log(a.size))
  p = a[a > 0] / total
  return float(-np.sum(p * np.log(p)))


def map_entropy(map: jax.typing.ArrayLike) -> Score:  # pylint: disable=redefined-builtin
  """The Shannon entropy of the normalized |map| (Bhatt et al. 2020), in nats.

  p = |map| / sum |map|, H = -sum_i p_i log p_i (0 log 0 = 0). It is log(n)
  for a uniform map of n pixels, the most, and 0 for a single non-zero
  pixel; lower = more concentrated. A map that is zero everywhere is taken
  as uniform: log(n).

  Args:
    map: HxW (or NxHxW) values; signs are dropped.

  Returns:
    A float in [0, log(H*W)], or an (N,) array for a batch.

  Raises:
    ValueError: if `map` is not a finite HxW or NxHxW array.

  Examples:
    >>> round(map_entropy(np.ones((2, 2))), 6), map_entropy(np.eye(2))
    (1.386294, 0.6931471805599453)
  """
  m = as_map(map, "map")
  check_plane(m, "map")
  return per_image(_entropy, m)
