"""Turning a uint8 image into a model's normalized NHWC input.

`preprocess` is `prepare` (validate, resize, crop) and then `normalize`
(`(x * scale - mean) / std` per channel), the one place that arithmetic is
written: `sr_jax.sr`, `sr_jax.train` and `sr_jax.evaluation` call it too.

The resize and crop follow torchvision's PIL pipeline
(`Resize(256)`, `CenterCrop(224)`, `ToTensor()`, `Normalize(mean, std)`):
the same size arithmetic, PIL's own bilinear resampling and the same float32
operations, so the result equals that pipeline's output bit for bit (max abs
difference 0.0, tested against an independent PIL + torch re-implementation
in `tests/test_preprocess.py`, for RGB, grayscale, RGBA and odd sizes).
"""

from __future__ import annotations

import functools
from typing import Union

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from sr_jax.archs import Preprocessing, preprocessing_of


def as_rgb_uint8(image: np.ndarray, *, name: str = "image") -> np.ndarray:
  """Validates `image` and returns it as a uint8 HxWx3 array.

  Accepts HxW (grayscale, repeated to three channels), HxWx1, HxWx3 and HxWx4
  (alpha dropped). Anything else raises a ValueError naming `name`.
  """
  image = np.asarray(image)
  if image.dtype != np.uint8:
    raise ValueError(
        f"`{name}` (dtype={image.dtype}) must be uint8 with values 0..255; "
        "convert floats with `(x * 255).round().astype(np.uint8)`.")
  if image.ndim == 2:
    image = image[..., None]
  if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
    raise ValueError(
        f"`{name}` (shape={image.shape}) must be HxW, HxWx1, HxWx3 or HxWx4.")
  if min(image.shape[:2]) < 1:
    raise ValueError(f"`{name}` (shape={image.shape}) is empty.")
  if image.shape[-1] == 1:
    image = np.repeat(image, 3, axis=-1)
  return np.ascontiguousarray(image[..., :3])


def resize_center_crop(image: np.ndarray, resize: int, crop: int) -> np.ndarray:
  """Shorter side to `resize` (PIL bilinear), then a centred `crop` square."""
  h, w = image.shape[:2]
  short, long = (w, h) if w <= h else (h, w)
  if short != resize:
    new_short, new_long = resize, int(resize * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    image = np.asarray(
        Image.fromarray(image).resize((new_w, new_h), Image.BILINEAR))
  h, w = image.shape[:2]
  if h < crop or w < crop:
    raise ValueError(
        f"`crop` (={crop}) is larger than the resized image ({h}x{w}); "
        f"choose `resize` >= `crop`.")
  top = int(round((h - crop) / 2.0))
  left = int(round((w - crop) / 2.0))
  return image[top:top + crop, left:left + crop]


def prepare(image: np.ndarray,
            arch: Union[str, Preprocessing] = "vgg16") -> np.ndarray:
  """The uint8 HxWx3 crop that architecture `arch` sees (not normalized):
  `image` (as `preprocess` takes it) validated, resized and cropped.

  Examples:
    >>> prepare(np.zeros((300, 400), np.uint8), "vgg16").shape
    (224, 224, 3)
  """
  spec = preprocessing_of(arch)
  image = as_rgb_uint8(image)
  if spec.resize is not None:
    image = resize_center_crop(image, spec.resize, spec.crop or spec.resize)
  return image


def _normalized(pixels: np.ndarray, spec: Preprocessing) -> np.ndarray:
  """`(pixels * scale - mean) / std` in NumPy, float32 (see `normalize`)."""
  x = (pixels * np.float64(spec.scale)).astype(np.float32)
  return (x - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std,
                                                              np.float32)


@functools.lru_cache(maxsize=16)
def _table(spec: Preprocessing) -> np.ndarray:
  """(256, C) float32: `_normalized` of every uint8 value in every channel."""
  return _normalized(np.tile(np.arange(256)[:, None], (1, len(spec.mean))),
                     spec)


def normalize(images: jax.typing.ArrayLike,
              arch: Union[str, Preprocessing] = "vgg16") -> jax.Array:
  """Pixels as float32 model input: `(x * scale - mean) / std` per channel.

  Nothing is resized: `images` are already what the model sees (`prepare`'s
  crops, stacked or not, or a batch of training images), with the channels
  last. NumPy and JAX arrays both work, under `jit` too.

  Scaling in float64 and rounding once gives exactly torch's float32
  `x.float().div(255)` for every uint8 value (a float32 multiply by 1/255
  is off by one ulp for some); then float32 subtract and divide, as
  torchvision's `Normalize` does. Under `jit` there is no float64, and XLA
  would turn the division by `std` into a multiplication by its reciprocal,
  so traced uint8 pixels look their values up in a table computed the same
  way: the result is the same to the bit.

  Args:
    images: pixel values, (..., C); uint8 under `jit`.
    arch: an architecture name from `sr_jax.models.ARCHS`, or a
      `Preprocessing`.

  Returns:
    float32 array shaped like `images`.

  Raises:
    ValueError: if traced `images` are not uint8.

  Examples:
    >>> x = normalize(np.full((2, 4, 4, 3), 255, np.uint8), "vgg16")
    >>> x.shape, x.dtype, [round(float(v), 3) for v in x[0, 0, 0]]
    ((2, 4, 4, 3), dtype('float32'), [2.249, 2.429, 2.64])
  """
  spec = preprocessing_of(arch)
  if isinstance(images, jax.core.Tracer):
    if images.dtype != np.uint8:
      raise ValueError(
          f"`images` (dtype={images.dtype}) must be uint8 under `jit`.")
    return jnp.asarray(_table(spec))[images, jnp.arange(len(spec.mean))]
  return jnp.asarray(_normalized(np.asarray(images), spec))


def preprocess(
    image: np.ndarray,
    arch: Union[str, Preprocessing] = "vgg16",
) -> jax.Array:
  """A uint8 image as a float32 1xHxWx3 input for architecture `arch`.

  Args:
    image: uint8 array, HxW (grayscale), HxWx3 (RGB) or HxWx4 (RGBA; alpha is
      dropped).
    arch: an architecture name from `sr_jax.models.ARCHS`, or a
      `Preprocessing` for custom settings.

  Returns:
    float32 array of shape (1, crop, crop, 3), normalized per channel:
    `normalize(prepare(image, arch), arch)[None]`.

  Examples:
    >>> img = np.zeros((300, 400, 3), np.uint8)
    >>> preprocess(img, arch="vgg16").shape
    (1, 224, 224, 3)
  """
  spec = preprocessing_of(arch)
  return normalize(prepare(image, spec), spec)[None]
