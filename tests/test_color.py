"""sRGB → CIE L*a*b* against scikit-image's independent implementation."""

import jax.numpy as jnp
import numpy as np
import pytest
from skimage import color

from sr_jax.saliency import rgb_to_lab
from sr_jax.saliency.color import WHITE_D65, XYZ_FROM_RGB, srgb_to_linear


def test_matches_skimage_on_random_colours(rng):
  rgb = rng.random((500, 3))
  ours = np.asarray(rgb_to_lab(jnp.asarray(rgb, jnp.float32)))
  ref = color.rgb2lab(rgb.astype(np.float32).astype(np.float64))
  # float32 arithmetic on L in [0, 100]; skimage rounds the CIE constants.
  np.testing.assert_allclose(ours, ref, atol=2e-4, rtol=0)


def test_matches_skimage_on_an_image_with_dark_and_saturated_pixels(rng):
  image = rng.random((7, 9, 3)).astype(np.float32)
  image[0, :3] = [[0, 0, 0], [1, 1, 1], [0.01, 0.002, 0.03]]  # toe of curves
  image[1, :3] = np.eye(3)
  ours = np.asarray(rgb_to_lab(image))
  np.testing.assert_allclose(ours, color.rgb2lab(image.astype(np.float64)),
                             atol=2e-4, rtol=0)


def test_float64_in_float64_out_and_close_to_skimage(x64, rng):
  rgb = rng.random((500, 3))
  ours = rgb_to_lab(rgb)
  assert ours.dtype == jnp.float64
  ref = color.rgb2lab(rgb)
  # skimage rounds the constants of the linear toe only (XYZ/white below
  # 0.008856); elsewhere both compute the same float64 formula.
  xyz = np.asarray(srgb_to_linear(rgb)) @ (XYZ_FROM_RGB / WHITE_D65[:, None]).T
  above = np.all(xyz > 0.009, axis=1)
  assert above.sum() > 400
  np.testing.assert_allclose(np.asarray(ours)[above], ref[above], atol=1e-10,
                             rtol=0)
  np.testing.assert_allclose(np.asarray(ours), ref, atol=2e-4, rtol=0)


def test_white_and_black():
  lab = np.asarray(rgb_to_lab(jnp.array([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])))
  np.testing.assert_allclose(lab[:, 0], [100, 0], atol=1e-4)
  np.testing.assert_array_equal(lab[1], [0, 0, 0])
  # The 6-digit sRGB matrix maps white to D65 only to ~1e-5, so a*, b* of
  # white are a few thousandths off zero (skimage: -0.0025, 0.0047).
  np.testing.assert_allclose(lab[0, 1:], [-0.00245, 0.00465], atol=2e-4)


def test_transfer_curve_is_continuous_and_monotone():
  x = jnp.linspace(-0.1, 1.1, 2001)
  y = np.asarray(srgb_to_linear(x))
  assert np.all(np.diff(y) > 0)
  below, above = np.asarray(srgb_to_linear(jnp.array([0.04045, 0.0404501])))
  assert abs(above - below) < 1e-6


@pytest.mark.parametrize("shape", [(3,), (4, 4), (4, 4, 4)])
def test_wrong_channel_count(shape):
  with pytest.raises(ValueError, match=r"`rgb` \(shape=.*\) must have a last "
                     r"axis of size 3"):
    rgb_to_lab(jnp.zeros(shape[:-1] + (shape[-1] + 1,)))


def test_integer_input_is_refused():
  with pytest.raises(ValueError, match=r"`rgb` \(dtype=uint8\) must be "
                     r"floating point"):
    rgb_to_lab(np.zeros((2, 3), np.uint8))
