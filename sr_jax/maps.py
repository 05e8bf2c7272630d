"""Scaling and reducing maps: the one home of min-max.

`minmax` is the one min-max scaling of the project. It takes NumPy arrays
(and returns NumPy) or JAX arrays (and returns JAX, so it can be jitted), and
scales over the given axes; a slice that is constant becomes all zeros.
`normalize` is the checked float64 form for one map, used by the metrics and
the pictures; `lrp_map` reduces a signed relevance map to the SR paper's
heatmap.

Examples:
  >>> import numpy as np
  >>> normalize(np.array([[1.0, 3.0], [2.0, 5.0]])).tolist()
  [[0.0, 0.5], [0.25, 1.0]]
  >>> minmax(np.array([[0.0, 2.0], [4.0, 4.0]]), axis=1).tolist()
  [[0.0, 1.0], [0.0, 0.0]]
"""

from __future__ import annotations

from typing import Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

Axis = Union[int, Sequence[int], None]

__all__ = ["as_map", "lrp_map", "minmax", "normalize"]


def as_map(x: jax.typing.ArrayLike, name: str = "map") -> np.ndarray:
  """`x` as a float64 NumPy array, checked.

  Args:
    x: a numeric array (NumPy, JAX or nested lists).
    name: the argument's name, for the error message.

  Returns:
    float64 array of `x`'s shape.

  Raises:
    ValueError: naming `name`, if `x` is not numeric (booleans are not maps)
      or holds NaN or inf.
  """
  a = np.asarray(x)
  if a.dtype == bool or not np.issubdtype(a.dtype, np.number):
    raise ValueError(f"`{name}` (dtype={a.dtype}) must be a numeric array.")
  a = a.astype(np.float64)
  if not np.all(np.isfinite(a)):
    raise ValueError(
        f"`{name}` contains {np.count_nonzero(~np.isfinite(a))} NaN or inf "
        "values; maps must be finite.")
  return a


def minmax(x: jax.typing.ArrayLike, *,
           axis: Axis = None) -> jax.typing.ArrayLike:
  """Min-max scales `x` to [0, 1] over `axis`; a constant slice becomes 0.

  `(x - min) / (max - min)`, with min and max taken over `axis` (None: over
  all of `x`). A JAX array (or a tracer, under `jit`) is scaled with
  `jax.numpy` and keeps its dtype; anything else goes through NumPy.

  Args:
    x: the values; finite.
    axis: the axis or axes that share one min and max, e.g. `(-3, -2, -1)`
      for each HxWxC map of a stack, `(0, 1)` for each channel of an HxWxC
      image.

  Returns:
    An array of `x`'s shape in [0, 1]: JAX for JAX input, NumPy otherwise.

  Examples:
    >>> import jax.numpy as jnp
    >>> minmax(jnp.array([2.0, 4.0, 3.0])).tolist()
    [0.0, 1.0, 0.5]
  """
  xp = jnp if isinstance(x, jax.Array) else np
  x = xp.asarray(x)
  low = x.min(axis=axis, keepdims=True)
  span = x.max(axis=axis, keepdims=True) - low
  safe = xp.where(span > 0, span, xp.ones_like(span))
  return xp.where(span > 0, (x - low) / safe, xp.zeros_like(x))


def normalize(map: jax.typing.ArrayLike) -> np.ndarray:  # pylint: disable=redefined-builtin
  """Min-max scales a map to [0, 1] as float64; a constant map becomes zeros.

  One min and max over the whole array (`minmax` with `axis=None`), after
  `as_map`'s checks.

  Args:
    map: HxW array (finite).

  Returns:
    float64 array of `map`'s shape in [0, 1].

  Raises:
    ValueError: if `map` is not numeric or not finite.
  """
  return minmax(as_map(map, "map"))


def lrp_map(relevance: jax.typing.ArrayLike) -> np.ndarray:
  """The LRP heatmap the SSIM ratio uses: channel-summed |R|, min-max to [0, 1].

  Args:
    relevance: signed relevance, HxWxC (channels are reduced by summing their
      absolute values) or HxW (taken as it is, then normalized).

  Returns:
    float64 HxW array in [0, 1] (all zeros for a constant map).

  Raises:
    ValueError: if `relevance` is neither HxW nor HxWxC, or not finite.

  Examples:
    >>> import numpy as np
    >>> lrp_map(np.array([[[1.0, -1.0]], [[0.0, 0.5]]])).tolist()
    [[1.0], [0.0]]
  """
  r = as_map(relevance, "relevance")
  if r.ndim == 3:
    r = np.abs(r).sum(axis=-1)
  elif r.ndim != 2:
    raise ValueError(f"`relevance` (shape={r.shape}) must be HxW or HxWxC.")
  return normalize(r)

