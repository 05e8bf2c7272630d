"""Tests of the demo model's training (`sr_jax.train`) and its bundled weights."""

import hashlib
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sr_jax import train, weights
from sr_jax.data import synthetic
from sr_jax.models import get_arch, load_model, normalize, preprocess

BUNDLED = pathlib.Path(__file__).resolve().parent.parent / "weights"
# The smoke run trains the test-only `demo_vgg_tiny` (the same design at toy
# width) on 32x32 images: 600 steps of 32, about 35 s on 2 CPU cores, where
# it reaches 58% (chance: 12.5%). Its test images have a seed of their own.
SMOKE = train.TrainConfig(arch="demo_vgg_tiny", steps=600, batch_size=32,
                          learning_rate=3e-3, eval_seed=21, eval_count=400,
                          log_every=100)


@pytest.fixture(scope="module")
def smoke_run():
  lines = []
  result = train.train(SMOKE, log=lines.append)
  return result, lines


def test_demo_vgg_is_a_small_vgg_with_torchvision_names():
  spec = get_arch("demo_vgg")
  assert spec.num_classes == len(synthetic.CLASS_NAMES)
  assert spec.input_size == synthetic.DEFAULT_SIZE
  model, variables = load_model("demo_vgg", key=jax.random.PRNGKey(0))
  names = set(variables["params"])
  assert {"features_0", "classifier_0", "classifier_3", "classifier_6"} <= names
  n = sum(x.size for x in jax.tree.leaves(variables))
  assert n * 4 < 10e6
  x = jnp.zeros((2, 64, 64, 3), jnp.float32)
  assert model.apply(variables, x).shape == (2, len(synthetic.CLASS_NAMES))


def test_training_normalization_is_the_inference_preprocessing():
  """Training normalizes under `jit`, to the bit as `preprocess` does."""
  images, _, _ = synthetic.make_batch(0, 0, 3)
  spec = get_arch("demo_vgg")
  x = np.asarray(jax.jit(normalize, static_argnums=1)(images,
                                                      spec.preprocessing))
  for image, xi in zip(images, x):
    np.testing.assert_array_equal(
        xi, np.asarray(preprocess(image, "demo_vgg"))[0])
  with pytest.warns(DeprecationWarning, match=r"`sr_jax\.train\.normalise` "
                    r"is deprecated; use `sr_jax\.models\.preprocess\."
                    r"normalize`"):
    old = train.normalise(images, spec.preprocessing)
  np.testing.assert_array_equal(old, x)


def test_smoke_run_learns_well_above_chance(smoke_run):
  result, lines = smoke_run
  chance = 1.0 / len(synthetic.CLASS_NAMES)
  assert result.accuracy >= 3 * chance, (result.accuracy, chance)
  progress = [ln for ln in lines if ln.startswith("step ")]
  assert len(progress) == SMOKE.steps // SMOKE.log_every
  assert all("loss" in ln and "img/s" in ln and "ETA" in ln for ln in progress)


def test_evaluate_matches_a_per_image_reference(smoke_run):
  result, _ = smoke_run
  images, labels, _ = synthetic.make_batch(SMOKE.eval_seed, 0, 40,
                                          size=SMOKE.size)
  predicted = [int(np.argmax(result.model.apply(
      result.variables, preprocess(im, SMOKE.arch)))) for im in images]
  expected = np.mean(np.array(predicted) == labels)
  got = train.evaluate(result.model, result.variables, arch=SMOKE.arch,
                       seed=SMOKE.eval_seed, count=40, batch_size=16)
  assert got == pytest.approx(expected, abs=1e-12)


def test_training_is_reproducible():
  config = train.TrainConfig(arch="demo_vgg_tiny", steps=3, batch_size=8,
                             eval_count=8, log_every=3)
  a = train.train(config, log=lambda _: None)
  b = train.train(config, log=lambda _: None)
  jax.tree.map(np.testing.assert_array_equal, a.variables, b.variables)


def test_save_weights_writes_provenance_and_manifest(smoke_run, tmp_path):
  result, _ = smoke_run
  (tmp_path / "MANIFEST").write_text("abc  other.safetensors\n"
                                     "def  demo.safetensors\n")
  path = tmp_path / "demo.safetensors"
  digest = train.save_weights(result, path, command="python -m x --steps=1")
  assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
  assert (tmp_path / "MANIFEST").read_text().splitlines() == [
      "abc  other.safetensors", f"{digest}  demo.safetensors"]
  meta = weights.read_metadata(path)
  assert json.loads(meta["classes"]) == list(synthetic.CLASS_NAMES)
  assert meta["arch"] == SMOKE.arch
  assert meta["command"] == "python -m x --steps=1"
  assert int(meta["train_seed"]) == SMOKE.train_seed
  assert int(meta["eval_seed"]) == SMOKE.eval_seed
  assert float(meta["accuracy"]) == pytest.approx(result.accuracy, abs=1e-4)
  assert int(meta["steps"]) == SMOKE.steps and meta["image_size"] == "32"
  model, variables = weights.load(path)
  x = preprocess(synthetic.sample(0, 0, size=32)[0], SMOKE.arch)
  np.testing.assert_array_equal(model.apply(variables, x),
                                result.model.apply(result.variables, x))


@pytest.mark.parametrize("kwargs, match", [
    (dict(eval_seed=0, train_seed=0), r"`eval_seed` \(=0\) must differ"),
    (dict(steps=10, warmup_steps=10), r"`warmup_steps` \(=10\) must be in"),
    (dict(batch_size=0), r"`batch_size` \(=0\) must be >= 1"),
])
def test_bad_configs_are_named(kwargs, match):
  with pytest.raises(ValueError, match=match):
    train.TrainConfig(**kwargs)


# Every bundled file: the demo model, the one trained without auxiliary heads
# on the one-part variant, and the second demo architecture.
BUNDLED_FILES = [("demo_vgg", "demo_vgg", "double"),
                 ("demo_vgg_single", "demo_vgg", "single"),
                 ("demo_resnet", "demo_resnet", "double")]


@pytest.mark.parametrize("name,arch,variant", BUNDLED_FILES)
def test_bundled_weights_match_manifest_and_classify_held_out_images(
    name, arch, variant):
  path = BUNDLED / f"{name}.safetensors"
  if not path.exists():
    pytest.skip(f"no bundled {path.name}")
  digest = hashlib.sha256(path.read_bytes()).hexdigest()
  assert f"{digest}  {path.name}" in (
      BUNDLED / "MANIFEST").read_text().splitlines()
  assert path.stat().st_size < 10e6
  meta = weights.read_metadata(path)
  assert meta["arch"] == arch
  assert float(meta["accuracy"]) >= 0.97
  assert meta["eval_seed"] != meta["train_seed"]
  assert json.loads(meta["classes"]) == list(synthetic.class_names(variant))
  model, variables = weights.load(path)
  accuracy = train.evaluate(model, variables, arch=arch,
                            seed=synthetic.EVAL_SEED, count=500,
                            variant=variant)
  assert accuracy >= 0.95
