"""Pooling layers as Flax modules, so that LRP can find and intercept them.

Max pooling and adaptive average pooling are written as modules rather than
bare functions: `flax.linen.intercept_methods` only sees module calls, and the
LRP composites give average pooling its own rule (see `sr_jax.lrp`). Max
pooling is `max_pool`, a parameter-free `jax.custom_vjp` (an opaque node that
keeps its gradient) that is faster on XLA:CPU than `nn.max_pool`.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


class MaxPool2d(nn.Module):
  """Max pooling over NHWC input, matching `torch.nn.MaxPool2d` (floor mode).

  Attributes:
    window: pooling window (height, width).
    stride: stride (height, width).
    padding: -inf padding added on both sides, (height, width) or one int for
      both, as torch's `padding`: at most half the window.
  """

  window: tuple[int, int] = (2, 2)
  stride: tuple[int, int] = (2, 2)
  padding: int | tuple[int, int] = 0

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    return max_pool(x, self.window, stride=self.stride, padding=self.padding)


class _Pool(NamedTuple):
  """The static geometry of one max pooling: all pairs are (height, width)."""
  window: tuple[int, int]
  stride: tuple[int, int]
  padding: tuple[int, int]
  size: tuple[int, int]  # of the input

  @property
  def out(self) -> tuple[int, int]:
    return tuple((n + 2 * p - k) // s + 1 for n, k, s, p in
                 zip(self.size, self.window, self.stride, self.padding))

  @property
  def covered(self) -> tuple[int, int]:
    """Extent of the padded input that the windows reach (floor mode)."""
    return tuple(s * (o - 1) + k for o, k, s in
                 zip(self.out, self.window, self.stride))


def _pair(value: int | Sequence[int], name: str, minimum: int
          ) -> tuple[int, int]:
  pair = (value, value) if isinstance(value, (int, np.integer)) else value
  try:
    pair = tuple(int(v) for v in pair)
  except TypeError:
    pair = ()
  if len(pair) != 2 or min(pair) < minimum:
    raise ValueError(f"`{name}` (={value!r}) must be an int >= {minimum} or "
                     "a (height, width) pair of them.")
  return pair


def max_pool(x: jax.Array, window: int | Sequence[int], *,
             stride: int | Sequence[int] | None = None,
             padding: int | Sequence[int] = 0) -> jax.Array:
  """Max pooling of `x` (..., H, W, C) as `torch.nn.MaxPool2d` (floor mode).

  The value is `nn.max_pool`'s with the same -inf padding. The gradient goes,
  as in torch and XLA's `select_and_scatter`, to the first maximum of each
  window in row-major order, and where windows overlap their contributions
  add, in the windows' row-major order: bit-identical to
  `select_and_scatter` on XLA:CPU (on GPU both add with atomics). It is a
  parameter-free `jax.custom_vjp` (no forward-mode derivative), and on
  XLA:CPU far cheaper than `reduce_window` with `select_and_scatter`, which
  runs ~9x slower than its forward pass: `python benchmarks/models.py
  --layers` times AlexNet's pools against `nn.max_pool` and torch.

  Args:
    x: input, (..., height, width, channels), any leading batch axes.
    window: window (height, width), or one int for both.
    stride: stride (height, width) or one int; None: the window.
    padding: -inf padding on each side, (height, width) or one int; at most
      half the window, so that every window holds an input element.

  Returns:
    (..., out_height, out_width, channels), out = (n + 2 * padding - window)
    // stride + 1.

  Raises:
    ValueError: for a bad window, stride or padding, or an input with fewer
      than three axes or smaller than the window.

  Examples:
    >>> x = jnp.arange(25.0).reshape(1, 5, 5, 1)
    >>> max_pool(x, 3, stride=2)[0, ..., 0]
    Array([[12., 14.],
           [22., 24.]], dtype=float32)
  """
  window = _pair(window, "window", 1)
  stride = window if stride is None else _pair(stride, "stride", 1)
  padding = _pair(padding, "padding", 0)
  if any(2 * p > k for p, k in zip(padding, window)):
    raise ValueError(f"`padding` (={padding}) must be at most half the "
                     f"window (={window}).")
  if x.ndim < 3:
    raise ValueError(f"`x` (shape={tuple(x.shape)}) must be (..., height, "
                     "width, channels).")
  size = tuple(x.shape[-3:-1])
  if any(n + 2 * p < k for n, k, p in zip(size, window, padding)):
    raise ValueError(f"`x` (shape={tuple(x.shape)}) is smaller than the "
                     f"window (={window}) with padding {padding}.")
  lead = x.shape[:-3]
  y = _max_pool(x.reshape((math.prod(lead),) + x.shape[-3:]),
                _Pool(window, stride, padding, size))
  return y.reshape(lead + y.shape[1:])


def max_pool_tiles(x: jax.Array, window: tuple[int, int]) -> jax.Array:
  """`max_pool` over disjoint `window` tiles (stride = window), VGG's."""
  return max_pool(x, window, stride=window)


def _windows(x: jax.Array, pool: _Pool) -> list[jax.Array]:
  """The kh*kw strided views (N, Ho, Wo, C) of the padded `x`, one per
  window offset in row-major order."""
  (kh, kw), (sh, sw), (ph, pw) = pool.window, pool.stride, pool.padding
  (ho, wo), (hh, ww), (h, w) = pool.out, pool.covered, pool.size
  low = (-np.inf if jnp.issubdtype(x.dtype, jnp.inexact)
         else jnp.iinfo(x.dtype).min)
  xp = jax.lax.pad(x, jnp.asarray(low, x.dtype),  # negative: floor mode crop
                   ((0, 0, 0), (ph, hh - ph - h, 0), (pw, ww - pw - w, 0),
                    (0, 0, 0)))
  n, _, _, c = x.shape
  return [jax.lax.slice(xp, (0, dy, dx, 0),
                        (n, dy + sh * (ho - 1) + 1, dx + sw * (wo - 1) + 1, c),
                        (1, sh, sw, 1))
          for dy in range(kh) for dx in range(kw)]


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _max_pool(x: jax.Array, pool: _Pool) -> jax.Array:
  # XLA:CPU runs this elementwise maximum of strided views 4-6x faster than
  # `reduce_window` (AlexNet's pools, batch 1 and 8).
  return functools.reduce(jnp.maximum, _windows(x, pool))


def _max_pool_fwd(x, pool):
  """The value and, as the residual, each window's first maximum (its offset
  dy * kw + dx; NaN counts as a maximum, as in `jnp.maximum`)."""
  views = _windows(x, pool)
  y = views[0]
  first = jnp.zeros(y.shape, jnp.int8 if len(views) < 128 else jnp.int32)
  for k, v in enumerate(views[1:], 1):
    above = (v > y) | (jnp.isnan(v) & ~jnp.isnan(y))  # ties keep the first
    y = jnp.where(above, v, y)
    first = jnp.where(above, jnp.asarray(k, first.dtype), first)
  return y, first


def _max_pool_bwd(pool, first, g):
  """Each window's cotangent to its first maximum, as (N, hh, ww, C) over
  the padded input, then cropped to the input."""
  (ph, pw), (h, w) = pool.padding, pool.size
  if all(s >= k for s, k in zip(pool.stride, pool.window)):
    grad = _to_disjoint_windows(pool, first, g)
  else:
    grad = _add_to_overlapping_windows(pool, first, g)
  return (jax.lax.pad(grad, jnp.zeros((), g.dtype),
                      ((0, 0, 0), (-ph, h + ph - grad.shape[1], 0),
                       (-pw, w + pw - grad.shape[2], 0), (0, 0, 0))),)


def _to_disjoint_windows(pool, first, g):
  """No overlap: each stride cell (sh, sw) of the output holds one window, so
  the gradient is one elementwise select per offset, interleaved by a reshape
  (on XLA:CPU ~2x faster than the scatter below for VGG's 2x2 pools)."""
  (kh, kw), (sh, sw) = pool.window, pool.stride
  zero = jnp.zeros_like(g)
  cells = [[jnp.where(first == dy * kw + dx, g, zero) if dy < kh and dx < kw
            else zero for dx in range(sw)] for dy in range(sh)]
  grad = jnp.stack([jnp.stack(row, axis=3) for row in cells], axis=2)
  n, ho, _, wo, _, c = grad.shape  # (N, Ho, sh, Wo, sw, C)
  return grad.reshape(n, ho * sh, wo * sw, c)


def _add_to_overlapping_windows(pool, first, g):
  """Overlap: one scatter-add of every window's cotangent to its maximum's
  (row, column), batched over images and channels. XLA:CPU adds the updates
  in order, i.e. in the windows' row-major order, as `select_and_scatter`."""
  (_, kw), (sh, sw), (hh, ww) = pool.window, pool.stride, pool.covered
  n, ho, wo, c = g.shape
  first = first.astype(jnp.int32)
  rows = jnp.arange(ho, dtype=jnp.int32)[:, None, None] * sh + first // kw
  cols = jnp.arange(wo, dtype=jnp.int32)[None, :, None] * sw + first % kw
  dims = jax.lax.ScatterDimensionNumbers(
      update_window_dims=(), inserted_window_dims=(1, 2),
      scatter_dims_to_operand_dims=(1, 2), operand_batching_dims=(0, 3),
      scatter_indices_batching_dims=(0, 3))
  return jax.lax.scatter_add(
      jnp.zeros((n, hh, ww, c), g.dtype), jnp.stack([rows, cols], axis=-1),
      g, dims, mode=jax.lax.GatherScatterMode.PROMISE_IN_BOUNDS)


_max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


@functools.lru_cache(maxsize=None)
def adaptive_pool_matrix(size_in: int, size_out: int) -> np.ndarray:
  """The (size_out, size_in) averaging matrix of `torch.nn.AdaptiveAvgPool1d`.

  Bin `i` covers input indices [floor(i*in/out), ceil((i+1)*in/out)), so bins
  overlap when `in` is not a multiple of `out` and repeat when `in < out`.

  Args:
    size_in: input length.
    size_out: output length.

  Returns:
    A float32 matrix whose rows each sum to one.
  """
  if size_in < 1 or size_out < 1:
    raise ValueError(
        f"`size_in` (={size_in}) and `size_out` (={size_out}) must be >= 1.")
  m = np.zeros((size_out, size_in), np.float32)
  for i in range(size_out):
    start = (i * size_in) // size_out
    end = -((-(i + 1) * size_in) // size_out)  # ceil division
    m[i, start:end] = 1.0 / (end - start)
  return m


class AdaptiveAvgPool2d(nn.Module):
  """`torch.nn.AdaptiveAvgPool2d` on NHWC input, as two small matrix products.

  Attributes:
    output_size: (height, width) of the output.
  """

  output_size: tuple[int, int] = (7, 7)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    _, h, w, _ = x.shape
    oh, ow = self.output_size
    if (h, w) == (oh, ow):
      return x
    ph = jnp.asarray(adaptive_pool_matrix(h, oh), x.dtype)
    pw = jnp.asarray(adaptive_pool_matrix(w, ow), x.dtype)
    return jnp.einsum("ih,nhwc,jw->nijc", ph, x, pw)


def flatten_nchw(x: jax.Array) -> jax.Array:
  """Flattens NHWC activations in PyTorch's NCHW order (channel-major)."""
  return jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)


def lecun_normal_flat(key: jax.Array, shape: tuple[int, ...],
                      dtype: jnp.dtype = jnp.float32) -> jax.Array:
  """Flax's default kernel init (`lecun_normal`), drawn flat and reshaped.

  Same distribution: truncated normal in +-2 std, variance 1/fan_in with
  fan_in = prod(shape[:-1]) (HWIO conv and (in, out) dense kernels). Drawing a
  1-D vector matters for speed: XLA:CPU compiles a random draw of a small 4-D
  shape such as a 3x3 conv kernel about 10x slower than the same draw flat
  (seconds per layer), which dominated `load_model(..., key=...)`.
  """
  fan_in = math.prod(shape[:-1])
  std = math.sqrt(1.0 / fan_in) / 0.87962566103423978  # std of N(0,1) in +-2
  flat = jax.random.truncated_normal(key, -2.0, 2.0, (math.prod(shape),),
                                     dtype)
  return (flat * std).reshape(shape)


def conv(features: int, kernel: int, stride: int = 1, padding: int = 0,
         name: str | None = None) -> nn.Conv:
  """A 2-D convolution with PyTorch's explicit symmetric padding."""
  return nn.Conv(features, (kernel, kernel), strides=(stride, stride),
                 padding=((padding, padding), (padding, padding)),
                 kernel_init=lecun_normal_flat, name=name)


def dense(features: int, name: str | None = None) -> nn.Dense:
  """A dense layer (`torch.nn.Linear`) with `lecun_normal_flat` init."""
  return nn.Dense(features, kernel_init=lecun_normal_flat, name=name)


def check_nhwc(x: jax.Array, channels: int, min_size: int, model: str) -> None:
  """Raises a ValueError unless `x` is an NHWC batch the model can take."""
  if x.ndim != 4 or x.shape[-1] != channels:
    raise ValueError(
        f"`x` (shape={tuple(x.shape)}) must be NHWC with {channels} channels "
        f"for {model}, e.g. (1, 224, 224, {channels}).")
  if min(x.shape[1:3]) < min_size:
    raise ValueError(
        f"`x` (shape={tuple(x.shape)}) is too small for {model}: height and "
        f"width must be at least {min_size}.")
