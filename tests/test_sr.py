"""Tests of the SR pipeline (`sr_jax.sr`) on the tiny VGG and on VGG-16."""

import dataclasses
import json

import jax
import numpy as np
import pytest

import sr_jax
from sr_jax import lrp, saliency, sr, viz
from sr_jax import weights as weights_lib
from sr_jax.models.preprocess import resize_center_crop


def relevance_image_reference(r, mode):
  """float64 NumPy version of `relevance_to_image`, one map at a time."""
  r = np.asarray(r, np.float64)
  img = {"abs_rgb": np.abs(r), "sum_abs": np.abs(r).sum(-1),
         "positive": np.clip(r.sum(-1), 0, None)}[mode]
  span = img.max() - img.min()
  return (img - img.min()) / span if span > 0 else np.zeros_like(img)


@pytest.mark.parametrize("mode", sr.RELEVANCE_IMAGES)
def test_relevance_to_image_matches_reference(mode, rng):
  r = rng.normal(size=(3, 9, 7, 3)).astype(np.float32)
  r[1] = 0.0  # A constant map becomes all zeros, not NaN.
  out = np.asarray(sr.relevance_to_image(r, mode))
  shape = (3, 9, 7, 3) if mode == "abs_rgb" else (3, 9, 7)
  assert out.shape == shape and out.dtype == np.float32
  for i in range(3):  # Each map of a stack is scaled on its own.
    want = relevance_image_reference(r[i], mode)
    np.testing.assert_allclose(out[i], want, atol=1e-6)
    np.testing.assert_allclose(sr.relevance_to_image(r[i], mode), want,
                               atol=1e-6)
  assert out[0].min() == 0.0 and out[0].max() == pytest.approx(1.0)


def test_relevance_to_image_errors():
  with pytest.raises(ValueError, match=r"`relevance_image` \(='abs'\) must be "
                     r"one of 'abs_rgb', 'sum_abs', 'positive'"):
    sr.relevance_to_image(np.ones((4, 4, 3)), "abs")
  with pytest.raises(ValueError, match=r"`relevance` \(shape=\(4, 4\)\) must "
                     r"be HxWx3"):
    sr.relevance_to_image(np.ones((4, 4)))


# The tiny images are explained at their own size (the default working size
# of context-aware saliency is 250 pixels).
SAL = {"max_side": None}


def assert_maps_close(got, want):
  """Equal up to float32 rounding, relative to each array's scale.

  Batched and single runs differ by rounding (XLA's convolutions sum in
  another order for another batch size), which the later steps pass on.
  """
  assert sorted(got) == sorted(want)
  for key, value in want.items():
    scale = np.abs(np.asarray(value, np.float64)).max()
    np.testing.assert_allclose(got[key], value, rtol=1e-5, atol=1e-5 * scale,
                               err_msg=key)


@pytest.fixture(scope="module")
def tiny():
  model, variables = sr_jax.load_model("vgg_tiny", key=jax.random.PRNGKey(3))
  rng = np.random.default_rng(1)
  images = rng.integers(0, 256, (3, 32, 32, 3), np.uint8)
  return model, variables, images


@pytest.fixture(scope="module")
def tiny_results(tiny):
  model, variables, images = tiny
  return [sr.sr_map(model, variables, im, arch="vgg_tiny", **SAL)
          for im in images]


def test_sr_map_tiny_fields(tiny, tiny_results):
  model, variables, images = tiny
  out = tiny_results[0]
  image = images[0]
  np.testing.assert_array_equal(out.image, image)  # vgg_tiny: no resize.
  # Each field against its own computation, outside the pipeline.
  logits = np.asarray(model.apply(variables, sr_jax.preprocess(image, "vgg_tiny")))[0]
  np.testing.assert_allclose(out.logits, logits, rtol=1e-5, atol=1e-6)
  assert out.target == int(np.argmax(logits))
  p = np.exp(logits.astype(np.float64) - logits.max())
  assert out.probability == pytest.approx(p[out.target] / p.sum(), rel=1e-5)
  r = lrp.relevance(model, variables, sr_jax.preprocess(image, "vgg_tiny"),
                    composite="sr_paper")[0]
  np.testing.assert_allclose(out.relevance, r, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(out.relevance_image,
                             relevance_image_reference(r, "abs_rgb"), atol=1e-6)
  np.testing.assert_allclose(
      out.sr, saliency.context_aware(out.relevance_image, **SAL), atol=1e-6)
  np.testing.assert_allclose(out.image_saliency,
                             saliency.context_aware(image, **SAL), atol=1e-6)
  np.testing.assert_array_equal(out.edges, viz.canny(image))
  # Shapes, types and ranges.
  assert out.image.dtype == np.uint8 and out.logits.shape == (10,)
  assert out.relevance.shape == (32, 32, 3)
  assert out.relevance.dtype == np.float32
  for m in (out.relevance_image, out.sr, out.image_saliency):
    assert m.dtype == np.float32 and m.min() >= 0.0 and m.max() <= 1.0
  assert out.sr.shape == out.image_saliency.shape == out.edges.shape == (32, 32)
  assert out.edges.dtype == bool
  assert set(out.arrays()) == {f.name for f in dataclasses.fields(out)}
  with pytest.raises(dataclasses.FrozenInstanceError):
    out.target = 1


def test_sr_map_is_deterministic(tiny, tiny_results):
  model, variables, images = tiny
  again = sr.sr_map(model, variables, images[0], arch="vgg_tiny", **SAL)
  for key, value in tiny_results[0].arrays().items():
    np.testing.assert_array_equal(again.arrays()[key], value, err_msg=key)


def test_batch_equals_single(tiny, tiny_results):
  model, variables, images = tiny
  timings = {}
  crops = np.stack([sr.prepare(im, arch="vgg_tiny") for im in images])
  batched = sr.explain_crops(model, variables, crops, arch="vgg_tiny",
                             saliency_options=SAL, timings=timings)
  assert set(timings) == {"preprocess", "lrp", "saliency_relevance",
                          "saliency_image", "edges"}
  assert all(v >= 0 for v in timings.values())
  for single, many in zip(tiny_results, batched):
    assert many.target == single.target
    assert many.probability == pytest.approx(single.probability, rel=1e-6)
    assert_maps_close(many.arrays(), single.arrays())


def test_targets_and_options(tiny):
  model, variables, images = tiny
  out = sr.sr_map(model, variables, images[0], arch="vgg_tiny", target=7,
                  relevance_image="positive", with_image_saliency=False, **SAL)
  assert out.target == 7 and out.image_saliency is None
  assert "image_saliency" not in out.arrays()
  assert out.relevance_image.shape == (32, 32)
  p = np.exp(out.logits.astype(np.float64) - out.logits.max())
  assert out.probability == pytest.approx(p[7] / p.sum(), rel=1e-5)
  r = lrp.relevance(model, variables, sr_jax.preprocess(images[0], "vgg_tiny"),
                    target=7, composite="sr_paper")[0]
  np.testing.assert_allclose(out.relevance, r, rtol=1e-5, atol=1e-7)
  many = sr.sr_map_batch(model, variables, list(images), arch="vgg_tiny",
                         target=[4, 5, 6], with_image_saliency=False, **SAL)
  assert [m.target for m in many] == [4, 5, 6]
  assert all(m.image_saliency is None for m in many)
  r = lrp.relevance(model, variables, sr_jax.preprocess(images[0], "vgg_tiny"),
                    target=4, composite="sr_paper")[0]
  assert_maps_close({"r": many[0].relevance}, {"r": r})
  with pytest.raises(ValueError, match=r"`target` \(=10\) must be None \(each "
                     r"example's argmax\), an int in \[0, 10\)"):
    sr.sr_map(model, variables, images[0], arch="vgg_tiny", target=10)
  with pytest.raises(ValueError, match=r"`target` \(=\[1, 2\]\) must be None "
                     r"or one int"):
    sr.sr_map(model, variables, images[0], arch="vgg_tiny", target=[1, 2])
  with pytest.raises(ValueError, match=r"`images` have crops of different "
                     r"sizes"):
    sr.sr_map_batch(model, variables, [images[0], images[0][:16, :16]],
                    arch="vgg_tiny")


def test_prepare_and_class_names(tiny, tmp_path, rng):
  image = rng.integers(0, 256, (300, 400, 3), np.uint8)
  crop = sr.prepare(image, arch="vgg16")
  np.testing.assert_array_equal(crop, resize_center_crop(image, 256, 224))
  assert sr.class_names("vgg16") == sr_jax.imagenet_classes()
  assert sr.class_names("vgg_tiny") is None
  _, variables, _ = tiny
  path = tmp_path / "named.safetensors"
  names = [f"class {i}" for i in range(10)]
  weights_lib.save(path, variables, arch="vgg_tiny",
                   metadata={"classes": json.dumps(names)})
  assert sr.class_names("vgg_tiny", str(path)) == tuple(names)
  weights_lib.save(path, variables, arch="vgg_tiny",
                   metadata={"classes": json.dumps(names[:3])})
  with pytest.raises(ValueError, match=r"names 3 classes .* has 10"):
    sr.class_names("vgg_tiny", str(path))


def test_top_predictions(rng):
  logits = rng.normal(size=1000).astype(np.float32)
  top = sr.top_predictions(logits, 5, sr_jax.imagenet_classes())
  p = np.exp(logits.astype(np.float64) - logits.max())
  p /= p.sum()
  order = np.argsort(-p)[:5]
  assert [t[0] for t in top] == list(order)
  np.testing.assert_allclose([t[2] for t in top], p[order], rtol=1e-12)
  names = sr_jax.imagenet_classes()
  assert top[0][1] == f"{order[0]} {names[order[0]]}"
  assert sr.top_predictions(np.array([0.0, 2.0]), 5) == [
      (1, "1", pytest.approx(1 / (1 + np.exp(-2.0)))),
      (0, "0", pytest.approx(1 / (1 + np.exp(2.0))))]


def test_class_names_is_the_keyword_everywhere():
  from sr_jax.classes import label  # pylint: disable=import-outside-toplevel
  logits, names = np.array([0.0, 2.0]), ("cat", "dog")
  want = sr.top_predictions(logits, 2, class_names=names)
  assert [t[1] for t in want] == ["1 dog", "0 cat"]
  assert label(1, class_names=names) == "1 dog"
  with pytest.warns(DeprecationWarning, match=r"`names=` of sr_jax\.sr\."
                    r"top_predictions is deprecated; use `class_names=`"):
    assert sr.top_predictions(logits, 2, names=names) == want
  with pytest.warns(DeprecationWarning, match=r"`names=` of sr_jax\.classes\."
                    r"label is deprecated"):
    assert label(1, names=names) == "1 dog"
  with pytest.raises(ValueError, match=r"once, as `class_names=`"):
    label(1, names, names=names)


@pytest.fixture(scope="module")
def vgg16_random():
  """Full-size VGG-16 with random weights, two random images of different
  sizes (both become 224x224 crops) and their `sr_map` results.

  Computed once for the slow tests below: `sr_map` on VGG-16 takes several
  seconds per image on a small CPU.
  """
  model, variables = sr_jax.load_model("vgg16", key=jax.random.PRNGKey(0))
  rng = np.random.default_rng(0)
  images = [rng.integers(0, 256, (240, 320, 3), np.uint8),
            rng.integers(0, 256, (300, 260, 3), np.uint8)]
  singles = [sr.sr_map(model, variables, im, arch="vgg16") for im in images]
  return model, variables, images, singles


@pytest.mark.slow
def test_sr_map_vgg16_random_weights(vgg16_random):
  model, variables, images, singles = vgg16_random
  for image, out in zip(images, singles):
    np.testing.assert_array_equal(out.image,
                                  resize_center_crop(image, 256, 224))
    assert out.logits.shape == (1000,)
    assert out.relevance.shape == out.relevance_image.shape == (224, 224, 3)
    assert out.sr.shape == out.image_saliency.shape == out.edges.shape == (
        224, 224)
    assert np.all(np.isfinite(out.relevance))
    for m in (out.relevance_image, out.sr, out.image_saliency):
      assert m.min() >= 0.0 and m.max() <= 1.0 and m.max() > 0.0
    assert 0.0 < out.probability < 1.0
  # A second run on the same image gives the same bits.
  again = sr.sr_map(model, variables, images[0], arch="vgg16")
  want = singles[0].arrays()
  assert sorted(again.arrays()) == sorted(want)
  for key, value in want.items():
    np.testing.assert_array_equal(again.arrays()[key], value, err_msg=key)
  np.testing.assert_array_equal(again.logits, singles[0].logits)
  assert again.target == singles[0].target
  assert again.probability == singles[0].probability


@pytest.mark.slow
def test_sr_map_batch_vgg16_two_images(vgg16_random):
  model, variables, images, singles = vgg16_random
  # The two images (of different sizes) give different crops and maps, so a
  # batch that mixed them up, or explained one twice, would not pass.
  assert images[0].shape != images[1].shape
  assert not np.array_equal(singles[0].image, singles[1].image)
  assert not np.allclose(singles[0].relevance, singles[1].relevance)
  many = sr.sr_map_batch(model, variables, images, arch="vgg16")
  assert len(many) == 2
  for single, batched in zip(singles, many):
    assert batched.target == single.target
    assert_maps_close(batched.arrays(), single.arrays())


def test_script_flag_modes_match_the_library():
  from sr_jax.scripts import _flags  # pylint: disable=import-outside-toplevel
  assert _flags.RELEVANCE_IMAGES == sr.RELEVANCE_IMAGES


@pytest.mark.parametrize("shape, given, want", [
    ((224, 224), None, 224),      # never enlarged
    ((32, 48), None, 48),
    ((400, 300), None, 250),      # shrunk like context_aware's default
    ((224, 224), {"max_side": 250}, 250),   # the SR paper's resize
    ((224, 224), {"max_side": None, "k": 8}, None),
])
def test_saliency_options_for_crops(shape, given, want):
  opts = sr_jax.sr.saliency_options_for(shape, given)
  assert opts["max_side"] == want
  assert {k: v for k, v in opts.items() if k != "max_side"} == {
      k: v for k, v in (given or {}).items() if k != "max_side"}
