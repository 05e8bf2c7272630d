"""Image resizing for the saliency kernel: shapes and the exact convention.

Sizes are static (computed in Python from the input shape), so each resize is
two small matrix products with weight matrices built in NumPy at trace time
(constants: this compiles several times faster than `jax.image.resize`, which
builds its weights inside the graph).

The convention is that of `jax.image.resize` with `antialias=True` (and of
Pillow's BILINEAR and BICUBIC filters); `tests/test_saliency.py` checks the
matrices against both. Written out, so that the NumPy reference in
`tests/reference/context_aware_np.py` can implement it independently:

* pixel centres sit at half-integers, so output pixel `o` samples the input at
  `x = (o + 0.5) * n_in / n_out - 0.5`;
* the weight of input pixel `i` is `kernel(|x - i| / s)` with `s = n_in / n_out`
  when shrinking (the kernel is stretched: antialiasing) and `s = 1` when
  enlarging;
* the kernel is the triangle `max(0, 1 - |t|)` for "linear" and Keys' cubic
  with a = -0.5 for "cubic";
* weights falling outside the image are dropped and each output pixel's
  weights are renormalized to sum to one.

Each axis is resized separately, with its own ratio.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np


def round_half_up(x: float) -> int:
  """Rounds to the nearest integer, halves upwards (not to even)."""
  return int(math.floor(x + 0.5))


def working_shape(height: int, width: int,
                  max_side: int | None) -> tuple[int, int]:
  """The size at which saliency is computed: the larger side is `max_side`.

  Args:
    height: input height.
    width: input width.
    max_side: target length of the larger side; None keeps the input size.

  Returns:
    `(height, width)` with the aspect ratio kept (rounded half up, at least 1).
  """
  if max_side is None or max(height, width) == max_side:
    return height, width
  factor = max_side / max(height, width)
  return scaled_shape((height, width), factor)


def scaled_shape(shape: tuple[int, int], factor: float) -> tuple[int, int]:
  """`shape` multiplied by `factor`, rounded half up, each side at least 1."""
  return tuple(max(1, round_half_up(n * factor)) for n in shape)


def _triangle(t: np.ndarray) -> np.ndarray:
  return np.maximum(0.0, 1.0 - t)


def _keys_cubic(t: np.ndarray) -> np.ndarray:
  """Keys' cubic convolution kernel with a = -0.5, for t = |x| >= 0."""
  near = (1.5 * t - 2.5) * t * t + 1.0
  far = ((-0.5 * t + 2.5) * t - 4.0) * t + 2.0
  return np.where(t < 1.0, near, np.where(t < 2.0, far, 0.0))


_KERNELS = {"linear": _triangle, "cubic": _keys_cubic}


@functools.lru_cache(maxsize=256)
def resize_weights(n_in: int, n_out: int, method: str,
                   dtype: np.dtype = np.float32) -> np.ndarray:
  """The `(n_out, n_in)` matrix resizing one axis (rows sum to 1).

  Args:
    n_in: input length.
    n_out: output length.
    method: "linear" or "cubic".
    dtype: float32 or float64, the dtype of the weights.

  Returns:
    Read-only weights, computed in float64 and rounded to `dtype`.
  """
  if method not in _KERNELS:
    raise ValueError(
        f"`method` (={method!r}) must be one of {sorted(_KERNELS)}.")
  if n_in < 1 or n_out < 1:
    raise ValueError(f"`n_in` (={n_in}) and `n_out` (={n_out}) must be >= 1.")
  stretch = max(n_in / n_out, 1.0)
  centres = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
  t = np.abs(centres[:, None] - np.arange(n_in)[None, :]) / stretch
  weights = _KERNELS[method](t)
  weights /= weights.sum(axis=1, keepdims=True)
  weights = weights.astype(dtype)
  weights.flags.writeable = False
  return weights


def resize(image: jax.Array, shape: tuple[int, int],
           method: str = "linear") -> jax.Array:
  """Resizes an HxWxC float image to `shape` (see the module docstring).

  Args:
    image: float32 or float64 array `(H, W, C)`.
    shape: output `(height, width)`.
    method: "linear" or "cubic".

  Returns:
    A `(height, width, C)` array of `image`'s dtype (the weights are rounded
    to it); `image` itself when the size does not change.
  """
  if tuple(image.shape[:2]) == tuple(shape):
    return image
  dtype = np.dtype(image.dtype)
  rows = resize_weights(image.shape[0], shape[0], method, dtype)
  cols = resize_weights(image.shape[1], shape[1], method, dtype)
  return jnp.einsum("oh,hwc,pw->opc", rows, image, cols,
                    precision=jax.lax.Precision.HIGHEST)


def map_coordinates_back(index: jax.Array, size_from: int,
                         size_to: int) -> jax.Array:
  """Maps pixel indices of a `size_from` axis onto a `size_to` axis.

  Uses the same half-pixel convention as `resize`:
  `(index + 0.5) * size_to / size_from - 0.5`.
  """
  return (index + 0.5) * (size_to / size_from) - 0.5
