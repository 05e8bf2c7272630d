"""sr_jax.preprocess against an independent re-implementation of torchvision.

The reference follows torchvision's PIL pipeline as its source defines it:
`Resize(256)` (shorter side to 256, longer side `int(256 * long / short)`, no
resampling when the size is already right, `PIL.Image.resize(..., BILINEAR)`),
`CenterCrop(224)` (offsets `int(round((size - 224) / 2.0))`), `ToTensor()`
(`x.float().div(255)` in torch), `Normalize(mean, std)` (float32 `sub`, `div`).
The figure we state and test: max abs difference 0.0 (bit-identical).
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import sr_jax
from sr_jax.models import registry


def torchvision_pil_pipeline(image: np.ndarray, resize: int, crop: int,
                             mean, std, *, to_unit: bool = True) -> np.ndarray:
  """Image -> normalized 1xHxWx3, the way torchvision's transforms do it."""
  torch = pytest.importorskip("torch")
  if image.ndim == 3 and image.shape[-1] == 1:
    image = image[..., 0]  # PIL reads HxW as mode L
  img = Image.fromarray(image).convert("RGB")  # L and RGBA -> RGB
  w, h = img.size
  if min(w, h) != resize:
    if w <= h:
      size = (resize, int(resize * h / w))
    else:
      size = (int(resize * w / h), resize)
    img = img.resize(size, Image.BILINEAR)
  w, h = img.size
  top, left = int(round((h - crop) / 2.0)), int(round((w - crop) / 2.0))
  img = img.crop((left, top, left + crop, top + crop))
  t = torch.from_numpy(np.array(img)).permute(2, 0, 1).contiguous().float()
  if to_unit:
    t = t.div(255)
  t = t.sub(torch.as_tensor(mean, dtype=torch.float32)[:, None, None])
  t = t.div(torch.as_tensor(std, dtype=torch.float32)[:, None, None])
  return t.permute(1, 2, 0)[None].numpy()


def check_against_reference(image, arch="vgg16"):
  spec = registry.get_arch(arch).preprocessing
  ref = torchvision_pil_pipeline(image, spec.resize, spec.crop, spec.mean,
                                 spec.std, to_unit=spec.scale != 1.0)
  got = np.asarray(sr_jax.preprocess(image, arch=arch))
  assert got.dtype == np.float32 and got.shape == (1, 224, 224, 3)
  assert float(np.abs(got - ref).max()) == 0.0  # the documented figure


@pytest.mark.parametrize("hw", [(300, 400), (400, 300), (256, 256),
                                (257, 256), (256, 999), (255, 300), (224, 224),
                                (7, 5), (1000, 17), (333, 331)])
def test_rgb_matches_torchvision(rng, hw):
  check_against_reference(rng.integers(0, 256, hw + (3,), dtype=np.uint8))


@pytest.mark.parametrize("shape", [(300, 350), (260, 300, 1), (301, 257, 4)])
def test_grayscale_and_rgba_match_torchvision(rng, shape):
  check_against_reference(rng.integers(0, 256, shape, dtype=np.uint8))


def test_vgg_face_mean_and_no_std(rng):
  image = rng.integers(0, 256, (280, 250, 3), dtype=np.uint8)
  check_against_reference(image, arch="vgg_face")
  x = np.asarray(sr_jax.preprocess(np.full((256, 256, 3), 129, np.uint8),
                                   arch="vgg_face"))
  np.testing.assert_allclose(x[0, 0, 0], 129.0 - np.asarray(
      registry.VGG_FACE_MEAN, np.float32), rtol=0, atol=0)


def test_every_uint8_value_scales_like_totensor():
  """All 256 levels, through a 256x256 image that needs no resampling."""
  image = np.tile(np.arange(256, dtype=np.uint8)[:, None, None], (1, 256, 3))
  check_against_reference(image)


def test_vgg_tiny_has_no_resize():
  x = sr_jax.preprocess(np.zeros((32, 32, 3), np.uint8), arch="vgg_tiny")
  assert x.shape == (1, 32, 32, 3)


@pytest.mark.parametrize("image,match", [
    (np.zeros((300, 300, 3), np.float32),
     r"`image` \(dtype=float32\) must be uint8 with values 0..255"),
    (np.zeros((300, 300, 3), np.int16), r"`image` \(dtype=int16\) must be "
     r"uint8"),
    (np.zeros((1, 300, 300, 3), np.uint8),
     r"`image` \(shape=\(1, 300, 300, 3\)\) must be HxW, HxWx1, HxWx3 or HxWx4"),
    (np.zeros((300, 300, 2), np.uint8), r"\(shape=\(300, 300, 2\)\) must be"),
    (np.zeros((300,), np.uint8), r"\(shape=\(300,\)\) must be HxW"),
    (np.zeros((0, 300, 3), np.uint8), r"`image` \(shape=\(0, 300, 3\)\) is "
     r"empty"),
])
def test_bad_images(image, match):
  with pytest.raises(ValueError, match=match):
    sr_jax.preprocess(image)


def test_bad_arch_and_crop():
  image = np.zeros((300, 300, 3), np.uint8)
  with pytest.raises(ValueError, match=r"Unknown architecture `arch` "
                     r"\(='vgg99'\); known architectures: alexnet"):
    sr_jax.preprocess(image, arch="vgg99")
  with pytest.raises(ValueError, match=r"`crop` \(=300\) is larger than the "
                     r"resized image \(256x256\)"):
    sr_jax.preprocess(image, arch=registry.Preprocessing(resize=256, crop=300))


@pytest.mark.parametrize("arch", ["vgg16", "vgg_face", "demo_vgg"])
def test_normalize_is_one_arithmetic_eager_and_under_jit(arch):
  """Every uint8 level, every path: NumPy, JAX, jitted; `preprocess`."""
  import jax  # pylint: disable=import-outside-toplevel
  from sr_jax.models import normalize  # pylint: disable=import-outside-toplevel
  spec = registry.get_arch(arch).preprocessing
  levels = np.tile(np.arange(256, dtype=np.uint8)[:, None, None], (1, 2, 3))
  want = ((levels * np.float64(spec.scale)).astype(np.float32)
          - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std,
                                                            np.float32)
  for got in (normalize(levels, arch), normalize(levels, spec),
              normalize(jax.numpy.asarray(levels), arch),
              jax.jit(normalize, static_argnums=1)(levels, arch)):
    assert got.dtype == np.float32
    np.testing.assert_array_equal(np.asarray(got), want)
  with pytest.raises(ValueError, match=r"`images` \(dtype=float32\) must be "
                     r"uint8 under `jit`"):
    jax.jit(normalize, static_argnums=1)(levels.astype(np.float32), arch)


def test_sr_normalise_is_a_deprecated_alias():
  from sr_jax import sr  # pylint: disable=import-outside-toplevel
  crops = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
  with pytest.warns(DeprecationWarning, match=r"`sr_jax\.sr\.normalise` is "
                    r"deprecated; use `sr_jax\.models\.preprocess\.normalize`"):
    old = sr.normalise(crops, arch="vgg_tiny")
  np.testing.assert_array_equal(old, sr_jax.models.normalize(crops, "vgg_tiny"))
  np.testing.assert_array_equal(
      old[1], sr_jax.preprocess(crops[1], "vgg_tiny")[0])
