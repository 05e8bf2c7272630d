"""Exact Euclidean distance transform, jittable and vmappable.

The squared Euclidean distance to the nearest feature pixel separates into two
1-D passes (Felzenszwalb & Huttenlocher, "Distance Transforms of Sampled
Functions", Theory of Computing 2012; Meijster et al. 2000):

    g(i, j)    = min_{i'} [ (i - i')^2  if mask(i', j) else inf ]
    D^2(i, j)  = min_{j'} [ g(i, j') + (j - j')^2 ]

Instead of the lower-envelope algorithm, whose data-dependent loops suit
XLA poorly, each pass is a brute-force min over the other index: a broadcast
add feeding a reduction, which XLA fuses (the H·H·W sum is not stored). The
work is H·W·(H + W) additions, milliseconds at 250 px. All values are
integers below 2^24, exact in float32 (and float64: `dtype`), so the result
is exact up to the final square root, which is rounded in `dtype`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def _min_plus_pass(g: jax.Array) -> jax.Array:
  """`out[i, j] = min_{i'} g[i', j] + (i - i')^2` along axis 0."""
  index = np.arange(g.shape[0], dtype=g.dtype)
  cost = (index[:, None] - index[None, :]) ** 2           # (i, i')
  return jnp.min(g[None, :, :] + cost[:, :, None], axis=1)


def _float_dtype(dtype) -> np.dtype:
  """`dtype` as float32 or float64 (float64 only under jax_enable_x64)."""
  dtype = np.dtype(dtype)
  if dtype not in (np.float32, np.float64):
    raise ValueError(f"`dtype` (={dtype}) must be float32 or float64.")
  return np.dtype(jax.dtypes.canonicalize_dtype(dtype))


def squared_distance_transform(mask: jax.typing.ArrayLike, *,
                               dtype=np.float32) -> jax.Array:
  """Squared Euclidean distance from each pixel to the nearest True pixel.

  Args:
    mask: boolean array `(H, W)`; True marks the feature pixels (distance 0).
    dtype: float32 or float64 (the latter under `jax_enable_x64`; otherwise
      float32), the dtype of the result.

  Returns:
    `(H, W)` of `dtype`: squared distances in pixels, exact integers. Where
    the mask has no True pixel at all, every value is inf.

  Raises:
    ValueError: if `mask` is not 2-D or `dtype` is not float32 or float64.
  """
  mask = jnp.asarray(mask)
  if mask.ndim != 2:
    raise ValueError(f"`mask` (shape={mask.shape}) must be 2-D (HxW).")
  dtype = _float_dtype(dtype)
  g = jnp.where(mask, dtype.type(0), dtype.type(np.inf))
  g = _min_plus_pass(g)
  return _min_plus_pass(g.T).T


def distance_transform(mask: jax.typing.ArrayLike, *,
                       dtype=np.float32) -> jax.Array:
  """Euclidean distance from each pixel to the nearest True pixel.

  Equals `scipy.ndimage.distance_transform_edt(~mask)` (to the rounding of
  the square root in `dtype`).

  Args:
    mask: boolean array `(H, W)`.
    dtype: float32 or float64 (see `squared_distance_transform`).

  Returns:
    `(H, W)` distances in pixels, of `dtype` (inf everywhere if `mask` is
    empty).

  Raises:
    ValueError: as `squared_distance_transform`.

  Examples:
    >>> m = jnp.zeros((3, 4), bool).at[0, 0].set(True)
    >>> d = distance_transform(m)  # d[2, 3] == sqrt(13)
  """
  return jnp.sqrt(squared_distance_transform(mask, dtype=dtype))
