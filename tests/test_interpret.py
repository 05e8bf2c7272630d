"""Tests of `sr_jax.interpret`: class models and segmentation from saliency."""

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from PIL import Image
from scipy import ndimage

from sr_jax.data import synthetic
from sr_jax.interpret import class_model, segment
from sr_jax.models import Preprocessing, load_model, preprocess
from sr_jax.models.small import DEMO_PREPROCESSING

# The module of `class_model`.
cm_lib = importlib.import_module("sr_jax.interpret.class_models")
REPO = Path(__file__).resolve().parents[1]
SHAPE = (4, 5, 3)
N_CLASSES = 6


def linear_model(rng):
  """f(x) = <W, x> + b as a function model, and W as HxWxCxK (float64)."""
  w = rng.normal(size=(*SHAPE, N_CLASSES))
  b = rng.normal(size=N_CLASSES)
  params = {"w": jnp.asarray(w.reshape(-1, N_CLASSES)), "b": jnp.asarray(b)}
  f = lambda p, x: x.reshape(x.shape[0], -1) @ p["w"] + p["b"]
  return f, params, w


class Linear(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Dense(N_CLASSES, param_dtype=jnp.float64)(
        x.reshape(x.shape[0], -1))


# Class models ---------------------------------------------------------------


@pytest.mark.parametrize("start", ["zero", "noise"])
def test_linear_model_reaches_the_closed_form_optimum(x64, rng, start):
  # max <w_t, I> + b_t - l2 ||I||^2 is reached at I* = w_t / (2 l2), from any
  # start. With step 1.2, sgd contracts the error by 1 - 2 * l2 * 1.2 = 0.4.
  f, params, w = linear_model(rng)
  key = None if start == "zero" else jax.random.PRNGKey(3)
  out = class_model(f, params, 2, image_shape=SHAPE, steps=120, l2=0.25,
                    learning_rate=1.2, key=key, progress=False)
  assert out.array.dtype == jnp.float64
  np.testing.assert_allclose(np.asarray(out.array), w[..., 2] / 0.5,
                             rtol=0, atol=1e-12)


def test_linen_linear_model_reaches_the_optimum(x64):
  model = Linear()
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, *SHAPE)))
  w = np.asarray(variables["params"]["Dense_0"]["kernel"]).reshape(
      *SHAPE, N_CLASSES)
  out = class_model(model, variables, 4, image_shape=SHAPE, steps=120,
                    l2=0.25, learning_rate=1.2, progress=False)
  np.testing.assert_allclose(np.asarray(out.array), w[..., 4] / 0.5,
                             rtol=0, atol=1e-12)


def test_iterates_follow_gradient_ascent_exactly(x64, rng):
  # From 0 with step lr: I_T = (1 - (1 - 2 l2 lr)^T) w / (2 l2), and the
  # score before step t is <w, I_t> + b. Steps not a multiple of the chunk.
  f, params, w = linear_model(rng)
  l2, lr, steps = 0.1, 0.5, cm_lib.CHUNK + 23
  out = class_model(f, params, 1, image_shape=SHAPE, steps=steps, l2=l2,
                    learning_rate=lr, progress=False)
  q = 1 - 2 * l2 * lr
  np.testing.assert_allclose(np.asarray(out.array),
                             (1 - q ** steps) * w[..., 1] / (2 * l2),
                             rtol=1e-12, atol=0)
  t = np.arange(steps)
  want = (1 - q ** t) * np.sum(w[..., 1] ** 2) / (2 * l2) + params["b"][1]
  assert out.scores.shape == (steps,)
  np.testing.assert_allclose(np.asarray(out.scores), want, rtol=1e-12)
  assert np.all(np.diff(np.asarray(out.scores)) > 0)  # monotone ascent


def test_clip_reaches_the_box_constrained_optimum(x64, rng):
  # The objective is separable and concave per pixel, so the optimum in the
  # box is the unconstrained one clipped; projected ascent reaches it.
  f, params, w = linear_model(rng)
  low, high = np.array([-1.0, -0.5, 0.0]), 1.5
  out = class_model(f, params, 0, image_shape=SHAPE, steps=120, l2=0.25,
                    learning_rate=1.2, clip=(low, high), progress=False)
  want = np.clip(w[..., 0] / 0.5, low, high)
  assert np.any(want != w[..., 0] / 0.5)
  np.testing.assert_allclose(np.asarray(out.array), want, rtol=0, atol=1e-12)


def test_jitter_is_undone(x64):
  # For a score summed over pixels, the gradient at a shifted image shifted
  # back is the gradient at the image: jitter must not change the run.
  f = lambda p, x: jnp.stack([jnp.sum(jnp.tanh(p * x), axis=(1, 2, 3)),
                              jnp.zeros(x.shape[0])], axis=-1)
  p = jnp.asarray(0.7)
  kwargs = dict(image_shape=(6, 7, 3), steps=20, l2=0.1,
                key=jax.random.PRNGKey(1), progress=False)
  plain = class_model(f, p, 0, **kwargs)
  shifted = class_model(f, p, 0, jitter=3, **kwargs)
  np.testing.assert_allclose(np.asarray(shifted.array),
                             np.asarray(plain.array), rtol=1e-12, atol=1e-12)


def test_normalize_grad_steps_have_the_learning_rate_as_length(x64, rng):
  f, params, _ = linear_model(rng)
  out = class_model(f, params, 3, image_shape=SHAPE, steps=1, l2=0.0,
                    learning_rate=0.3, normalize_grad=True, progress=False)
  np.testing.assert_allclose(float(jnp.linalg.norm(out.array)), 0.3,
                             rtol=1e-12)


def test_gaussian_blur_matches_scipy(x64, rng):
  x = rng.normal(size=(2, 9, 11, 3))
  for sigma in (0.5, 1.3):
    want = ndimage.gaussian_filter(x, sigma=(0, sigma, sigma, 0),
                                   mode="reflect", truncate=4.0)
    got = cm_lib.gaussian_blur(jnp.asarray(x), sigma)
    np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=1e-12)


def test_to_image_undoes_the_preprocessing(rng):
  image = rng.integers(0, 256, (8, 9, 3), np.uint8)
  x = preprocess(image, DEMO_PREPROCESSING)[0]
  np.testing.assert_array_equal(cm_lib.to_image(x, DEMO_PREPROCESSING), image)
  low, high = cm_lib.valid_range(DEMO_PREPROCESSING)
  assert np.all(cm_lib.to_image(np.broadcast_to(low, (2, 2, 3)),
                                DEMO_PREPROCESSING) == 0)
  assert np.all(cm_lib.to_image(np.broadcast_to(high, (2, 2, 3)),
                                DEMO_PREPROCESSING) == 255)
  # Without preprocessing: min-max to 0..255.
  got = cm_lib.to_image(np.array([[[-2.0, 0.0, 2.0]]]))
  np.testing.assert_array_equal(got, [[[0, 128, 255]]])
  assert not np.any(cm_lib.to_image(np.full((2, 2, 3), 1.5)))  # constant


def test_clip_true_keeps_pixels_valid():
  model, variables = load_model("demo_vgg")
  out = class_model(model, variables, 1, image_shape=(64, 64, 3), steps=20,
                    learning_rate=200.0, clip=True,
                    preprocessing=DEMO_PREPROCESSING, progress=False)
  low, high = cm_lib.valid_range(DEMO_PREPROCESSING)
  a = np.asarray(out.array, np.float64)
  assert np.all(a >= low - 1e-6) and np.all(a <= high + 1e-6)
  assert np.any(np.isclose(a, low, atol=1e-6) | np.isclose(a, high, atol=1e-6))


def test_second_target_does_not_recompile(rng):
  f, params, _ = linear_model(rng)
  params = jax.tree.map(lambda v: v.astype(jnp.float32), params)
  run = lambda t: class_model(f, params, t, image_shape=SHAPE, steps=5,
                              progress=False)
  run(0)
  size = cm_lib._chunk._cache_size()  # pylint: disable=protected-access
  run(1)
  assert cm_lib._chunk._cache_size() == size  # pylint: disable=protected-access


def test_custom_optimiser(x64, rng):
  f, params, w = linear_model(rng)
  # optax's bias correction mixes its int32 step count with floats, which
  # strict promotion (tests/conftest.py) refuses.
  with jax.numpy_dtype_promotion("standard"):
    out = class_model(f, params, 5, image_shape=SHAPE, steps=400, l2=0.25,
                      tx=optax.adam(0.05), progress=False)
  np.testing.assert_allclose(np.asarray(out.array), w[..., 5] / 0.5,
                             atol=1e-4)


def test_progress_bar_only_when_asked(rng, capsys):
  f, params, _ = linear_model(rng)
  params = jax.tree.map(lambda v: v.astype(jnp.float32), params)
  steps = 2 * cm_lib.CHUNK
  class_model(f, params, 0, image_shape=SHAPE, steps=steps, progress=False)
  assert capsys.readouterr().err == ""
  class_model(f, params, 0, image_shape=SHAPE, steps=steps)
  assert f"class model: {steps}/{steps} steps" in capsys.readouterr().err


def test_demo_model_recognises_its_class_models():
  # The plain version (zero start, sgd) stays near the mean image for
  # classes 2 to 6; these regularised settings (those of the script and of
  # docs/class_models.png, at 100 instead of 300 steps) give every class.
  model, variables = load_model("demo_vgg")
  for c in range(len(synthetic.CLASS_NAMES)):
    out = class_model(model, variables, c, image_shape=(64, 64, 3),
                      steps=100, learning_rate=5.0, key=jax.random.PRNGKey(0),
                      jitter=4, blur_every=10, clip=True, normalize_grad=True,
                      preprocessing=DEMO_PREPROCESSING, progress=False)
    assert out.image.shape == (64, 64, 3) and out.image.dtype == np.uint8
    logits = model.apply(variables, preprocess(out.image, DEMO_PREPROCESSING))
    assert int(jnp.argmax(logits)) == c, (c, logits)


@pytest.mark.parametrize("kwargs, message", [
    (dict(target=6), r"`target` \(=6\) must be an integer in \[0, 6\)"),
    (dict(target=-1), r"`target` \(=-1\)"),
    (dict(target=1.0), r"`target` \(=1.0\)"),
    (dict(target=True), r"`target` \(=True\)"),
    (dict(image_shape=(4, 5)), r"`image_shape` \(=\(4, 5\)\) must be"),
    (dict(image_shape=(4, 0, 3)), r"`image_shape`"),
    (dict(image_shape=(4, 6, 3)), r"`image_shape` \(=\(4, 6, 3\)\) does not "
     "fit the model"),
    (dict(steps=0), r"`steps` \(=0\) must be an integer >= 1"),
    (dict(l2=-0.1), r"`l2` \(=-0.1\) must be a finite number >= 0"),
    (dict(tx=optax.sgd(1.0), learning_rate=1.0), r"`learning_rate`"),
    (dict(learning_rate=0.0), r"`learning_rate` \(=0.0\) must be"),
    (dict(jitter=-1), r"`jitter` \(=-1\)"),
    (dict(blur_every=2, blur_sigma=0.0), r"`blur_sigma` \(=0.0\)"),
    (dict(clip=True), r"`clip` \(=True\) .* needs `preprocessing`"),
    (dict(clip=(1.0, 0.0)), r"`clip` bounds"),
    (dict(clip="yes"), r"`clip` \(='yes'\)"),
    (dict(preprocessing=Preprocessing(mean=(0.5,), std=(1.0,))),
     r"has 3 channels but `preprocessing` normalizes 1"),
    (dict(learning_rate=100.0, l2=1.0), r"diverged"),
])
def test_class_model_errors(rng, kwargs, message):
  f, params, _ = linear_model(rng)
  params = jax.tree.map(lambda v: v.astype(jnp.float32), params)
  options = dict(target=0, image_shape=SHAPE, steps=200, progress=False)
  options.update(kwargs)
  target = options.pop("target")
  with pytest.raises(ValueError, match=message):
    class_model(f, params, target, **options)


def test_script_writes_class_models_and_grid(tmp_path):
  out = tmp_path / "out"
  args = ["--model=demo_vgg_tiny", "--classes=0,3", "--steps=7",
          f"--out={out}"]
  proc = subprocess.run(
      [sys.executable, "-m", "sr_jax.scripts.class_model", *args], cwd=REPO,
      env=dict(os.environ), capture_output=True, text=True, timeout=300,
      check=False)
  assert proc.returncode == 0, proc.stderr
  assert sorted(p.name for p in out.iterdir()) == [
      "class_0.png", "class_3.png", "class_models.png"]
  # The same image in this process, from the library, with the flags'
  # defaults.
  model, variables = load_model("demo_vgg_tiny")
  want = class_model(model, variables, 3, image_shape=(32, 32, 3), steps=7,
                     l2=1e-3, learning_rate=5.0, key=jax.random.PRNGKey(0),
                     jitter=4, blur_every=10, clip=True, normalize_grad=True,
                     preprocessing=DEMO_PREPROCESSING, progress=False)
  with Image.open(out / "class_3.png") as im:
    got = np.asarray(im)
  assert np.abs(got.astype(int) - want.image.astype(int)).max() <= 1
  with Image.open(out / "class_models.png") as im:
    assert im.width > 2 * 32
  bad = subprocess.run(
      [sys.executable, "-m", "sr_jax.scripts.class_model", "--classes=0,x",
       f"--out={out}"], cwd=REPO, capture_output=True, text=True,
      timeout=300, check=False)
  assert bad.returncode == 2
  errors = [l for l in bad.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1 and "--classes='0,x'" in errors[0]


# Segmentation ----------------------------------------------------------------


def square_scene(rng, size=64, top=20, left=14, side=24):
  """A red square on a textured green-blue background, and its mask."""
  yy, xx = np.mgrid[:size, :size]
  background = np.stack([40 + 30 * np.sin(xx / 3.0), 120 + 40 * np.cos(
      yy / 4.0), 160 + 30 * np.sin((xx + yy) / 5.0)], axis=-1)
  image = background + rng.normal(0, 8, (size, size, 3))
  truth = np.zeros((size, size), bool)
  truth[top:top + side, left:left + side] = True
  image[truth] = [210, 40, 30] + rng.normal(0, 8, (truth.sum(), 3))
  return np.clip(image, 0, 255).astype(np.uint8), truth


def iou(a, b):
  return np.logical_and(a, b).sum() / np.logical_or(a, b).sum()


def test_segment_recovers_a_marked_square(rng):
  image, truth = square_scene(rng)
  saliency = ndimage.gaussian_filter(truth.astype(float), 3.0)
  saliency = saliency + rng.normal(0, 0.05, saliency.shape)
  result = segment(image, saliency)
  assert result.mask.dtype == bool and result.mask.shape == truth.shape
  assert iou(result.mask, truth) >= 0.9, iou(result.mask, truth)
  assert np.all(np.abs(np.subtract(result.box, (20, 14, 44, 38))) <= 1)
  # The seeds are the quantiles of the map, and they are kept.
  assert abs((result.seeds == 1).mean() - 0.05) < 0.01
  assert abs((result.seeds == -1).mean() - 0.30) < 0.01
  assert np.all(result.mask[result.seeds == 1])
  assert not np.any(result.mask[result.seeds == -1])


def test_segment_takes_max_abs_over_channels(rng):
  image, truth = square_scene(rng)
  saliency = ndimage.gaussian_filter(truth.astype(float), 3.0)
  saliency = saliency + rng.normal(0, 0.05, saliency.shape)
  signed = np.stack([-saliency, 0.5 * saliency, 0.1 * saliency], axis=-1)
  a, b = segment(image, signed), segment(image, np.abs(saliency))
  np.testing.assert_array_equal(a.mask, b.mask)
  assert a.box == b.box


def test_largest_component_box():
  from sr_jax.interpret.segmentation import largest_component_box  # pylint: disable=import-outside-toplevel
  mask = np.zeros((10, 12), bool)
  mask[1:3, 1:3] = True          # 4 pixels
  mask[5:9, 6:8] = True          # 8 pixels
  mask[9, 8] = True              # diagonal neighbour: 8-connected
  assert largest_component_box(mask) == (5, 6, 10, 9)
  assert largest_component_box(np.zeros((3, 3), bool)) == (0, 0, 0, 0)


def test_segment_without_opencv_says_how_to_install(rng, monkeypatch):
  image, truth = square_scene(rng, size=32, top=8, left=8, side=12)
  monkeypatch.setitem(sys.modules, "cv2", None)  # `import cv2` fails.
  with pytest.raises(ImportError, match=re.escape('pip install "sr_jax[segment]"')):
    segment(image, truth.astype(float) + np.linspace(0, 0.1, 32))


@pytest.mark.parametrize("kwargs, message", [
    (dict(fg_quantile=0.99), r"`fg_quantile` \(=0.99.* leave [0-4] "
     "foreground seed pixels"),
    (dict(bg_quantile=0.01), r"`bg_quantile` \(=0.01.* leave [0-4] "
     "background seed pixels"),
    (dict(fg_quantile=0.3, bg_quantile=0.3), r"0 < bg_quantile < fg_quantile"),
    (dict(fg_quantile=1.0), r"0 < bg_quantile < fg_quantile < 1"),
    (dict(bg_quantile=0.0), r"0 < bg_quantile < fg_quantile < 1"),
    (dict(fg_quantile="0.9"), r"`fg_quantile` \(='0.9'\) must be a number"),
    (dict(bg_quantile=True), r"`bg_quantile` \(=True\) must be a number"),
    (dict(iterations=0), r"`iterations` \(=0\) must be an integer >= 1"),
])
def test_segment_errors(rng, kwargs, message):
  image, _ = square_scene(rng, size=16, top=4, left=4, side=6)
  saliency = rng.random((16, 16))
  with pytest.raises(ValueError, match=message):
    segment(image, saliency, **kwargs)


def test_segment_input_errors(rng):
  image, truth = square_scene(rng, size=32, top=8, left=8, side=12)
  saliency = ndimage.gaussian_filter(truth.astype(float), 2.0)
  with pytest.raises(ValueError, match=r"`image` \(dtype=float64\) must be "
                     "uint8"):
    segment(image.astype(float), saliency)
  with pytest.raises(ValueError, match=r"`image` \(shape=\(32, 32\)\)"):
    segment(image[..., 0], saliency)
  with pytest.raises(ValueError, match=r"`saliency_map` \(shape=\(32, 31\)\) "
                     r"must match the image's size \(32, 32\)"):
    segment(image, saliency[:, :31])
  with pytest.raises(ValueError, match=r"`saliency_map` \(shape=\(1, 32, 32, "
                     r"3\)\) must be HxW or HxWxC"):
    segment(image, np.zeros((1, 32, 32, 3)))
  with pytest.raises(ValueError, match="NaN or infinite"):
    segment(image, np.where(truth, np.nan, saliency))
  with pytest.raises(ValueError, match=r"`saliency_map` \(dtype=bool\)"):
    segment(image, truth)
  with pytest.raises(ValueError, match=r"constant between .*`fg_quantile`"):
    segment(image, np.ones((32, 32)))
