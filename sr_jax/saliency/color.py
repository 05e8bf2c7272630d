"""sRGB to CIE L*a*b* (D65, 2° observer) in `jax.numpy`.

The conversion is the textbook one (IEC 61966-2-1 sRGB transfer curve, the
sRGB/D65 RGB→XYZ matrix, CIE 1976 L*a*b*), with the same constants as
`skimage.color.rgb2lab`, against which `tests/test_color.py` checks it. The
only difference is that the linear segment of the cube-root curve uses the
exact CIE constants (6/29)³ and 841/108 where skimage rounds them to 0.008856
and 7.787 (a difference below 1e-4 in L*).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

# sRGB (linear) → XYZ, D65. Rows give X, Y, Z.
XYZ_FROM_RGB = np.array([[0.412453, 0.357580, 0.180423],
                         [0.212671, 0.715160, 0.072169],
                         [0.019334, 0.119193, 0.950227]])
# Reference white of illuminant D65, 2° observer (Y normalized to 1).
WHITE_D65 = np.array([0.95047, 1.0, 1.08883])

_DELTA = 6.0 / 29.0


def srgb_to_linear(rgb: jax.typing.ArrayLike) -> jax.Array:
  """Undoes the sRGB transfer curve (values nominally in [0, 1]).

  The piecewise formula is applied as is outside [0, 1] too (linear below
  0.04045, the 2.4 power above), so every finite input has a finite output.
  """
  rgb = jnp.asarray(rgb)
  curve = ((jnp.maximum(rgb, 0.04045) + 0.055) / 1.055) ** 2.4
  return jnp.where(rgb > 0.04045, curve, rgb / 12.92)


def _lab_f(t: jax.Array) -> jax.Array:
  """The CIE cube-root function with its linear toe."""
  cube_root = jnp.cbrt(jnp.maximum(t, _DELTA ** 3))
  linear = t / (3.0 * _DELTA ** 2) + 4.0 / 29.0
  return jnp.where(t > _DELTA ** 3, cube_root, linear)


def rgb_to_lab(rgb: jax.typing.ArrayLike) -> jax.Array:
  """Converts sRGB in [0, 1] (last axis of size 3) to CIE L*a*b*.

  Args:
    rgb: float array `(..., 3)`, sRGB with values in [0, 1]. Convert uint8
      images with `rgb / 255` first.

  Returns:
    An array of the same shape and dtype (float64 stays float64 under
    `jax_enable_x64`): L* in [0, 100], a* and b* roughly in [-128, 128].

  Raises:
    ValueError: if the last axis does not have size 3.

  Examples:
    >>> lab = rgb_to_lab(jnp.array([[1.0, 1.0, 1.0]]))  # white: L*=100, a*=b*=0
  """
  rgb = jnp.asarray(rgb)
  if rgb.ndim < 1 or rgb.shape[-1] != 3:
    raise ValueError(
        f"`rgb` (shape={rgb.shape}) must have a last axis of size 3.")
  if not jnp.issubdtype(rgb.dtype, jnp.floating):
    raise ValueError(
        f"`rgb` (dtype={rgb.dtype}) must be floating point in [0, 1]; "
        "divide uint8 images by 255 first.")
  linear = srgb_to_linear(rgb)
  matrix = jnp.asarray(XYZ_FROM_RGB / WHITE_D65[:, None], rgb.dtype)
  xyz = jnp.einsum("...c,xc->...x", linear, matrix,
                   precision=jax.lax.Precision.HIGHEST)
  f = _lab_f(xyz)
  lightness = 116.0 * f[..., 1] - 16.0
  a = 500.0 * (f[..., 0] - f[..., 1])
  b = 200.0 * (f[..., 1] - f[..., 2])
  return jnp.stack([lightness, a, b], axis=-1)
