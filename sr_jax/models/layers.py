"""Pooling layers as Flax modules, so that LRP can find and intercept them.

Max pooling and adaptive average pooling are written as modules rather than
bare functions: `flax.linen.intercept_methods` only sees module calls, and the
LRP composites give average pooling its own rule (see `sr_jax.lrp`).
"""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


class MaxPool2d(nn.Module):
  """Max pooling over NHWC input, matching `torch.nn.MaxPool2d` (floor mode).

  Attributes:
    window: pooling window (height, width).
    stride: stride (height, width).
  """

  window: tuple[int, int] = (2, 2)
  stride: tuple[int, int] = (2, 2)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    window, stride = tuple(self.window), tuple(self.stride)
    if window == stride and x.ndim == 4:  # VGG's pools: disjoint tiles
      return max_pool_tiles(x, window)
    return nn.max_pool(x, window, strides=stride, padding="VALID")


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def max_pool_tiles(x: jax.Array, window: tuple[int, int]) -> jax.Array:
  """Max pooling of NHWC `x` over disjoint `window` tiles (stride = window,
  floor mode: rows and columns that do not fill a tile are dropped).

  The value is `nn.max_pool`'s. The gradient goes, as in torch and in XLA's
  `select_and_scatter`, to the first maximum of each tile in row-major order,
  but is computed with elementwise masks: XLA:CPU runs `select_and_scatter`
  about 9x slower than this (VGG-16's first pool: 28.7 against 3.3 ms per
  224x224x64 image), which was ~8% of a VGG-16 gradient or LRP pass.
  """
  return _tiles(x, window).max(axis=(2, 4))


def _tiles(x: jax.Array, window: tuple[int, int]) -> jax.Array:
  """(N, Ho, kh, Wo, kw, C) view of the part of `x` the tiles cover."""
  (kh, kw), (n, h, w, c) = window, x.shape
  ho, wo = h // kh, w // kw
  return x[:, :ho * kh, :wo * kw].reshape(n, ho, kh, wo, kw, c)


def _max_pool_tiles_fwd(x, window):
  y = max_pool_tiles(x, window)
  return y, (x, y)


def _max_pool_tiles_bwd(window, res, g):
  x, y = res
  tiles = _tiles(x, window)
  taken = jnp.zeros(y.shape, bool)
  rows = []
  for dy in range(window[0]):
    cols = []
    for dx in range(window[1]):
      hit = (tiles[:, :, dy, :, dx] == y) & ~taken   # first maximum only
      taken = taken | hit
      cols.append(jnp.where(hit, g, jnp.zeros_like(g)))
    rows.append(jnp.stack(cols, axis=3))             # (N, Ho, Wo, kw, C)
  grad = jnp.stack(rows, axis=2)                     # (N, Ho, kh, Wo, kw, C)
  n, ho, kh, wo, kw, c = grad.shape
  grad = grad.reshape(n, ho * kh, wo * kw, c)
  return (jnp.pad(grad, ((0, 0), (0, x.shape[1] - ho * kh),
                         (0, x.shape[2] - wo * kw), (0, 0))),)


max_pool_tiles.defvjp(_max_pool_tiles_fwd, _max_pool_tiles_bwd)


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
