"""The SR map over any method: SRConfig, sr_map(method=...), the scripts'
--method/--method_options/--arch flags, and notebook display."""

import subprocess
import sys

import numpy as np
import pytest

import sr_jax
from sr_jax import attribution, saliency, sr


@pytest.fixture(scope="module")
def tiny():
  model, variables = sr_jax.load_model("vgg_tiny")
  img = np.random.default_rng(0).integers(0, 256, (32, 32, 3), np.uint8)
  return model, variables, img


def test_sr_map_of_another_method_is_saliency_of_its_map(tiny):
  model, variables, img = tiny
  out = sr.sr_map(model, variables, img, arch="vgg_tiny", method="gradient",
                  target=3, with_image_saliency=False)
  x = sr_jax.preprocess(img, arch="vgg_tiny")
  g = attribution.gradient(model, variables, x, target=3)
  np.testing.assert_allclose(out.relevance, np.asarray(g[0]), rtol=1e-6,
                             atol=1e-8)
  want = saliency.context_aware(sr.relevance_to_image(g[0]),
                                **sr.saliency_options_for(img.shape))
  np.testing.assert_allclose(out.sr, np.asarray(want), atol=1e-6)
  lrp = sr.sr_map(model, variables, img, arch="vgg_tiny", target=3,
                  with_image_saliency=False)
  assert not np.allclose(lrp.relevance, out.relevance)


def test_config_and_alias(tiny):
  model, variables, img = tiny
  a = sr.sr_map(model, variables, img, arch="vgg_tiny", composite="epsilon_plus",
                with_image_saliency=False)
  b = sr.sr_map(model, variables, img, arch="vgg_tiny",
                config=sr.SRConfig.make(method="lrp", method_options={
                    "composite": "epsilon_plus"}, with_image_saliency=False))
  np.testing.assert_array_equal(a.sr, b.sr)
  assert sr.SRConfig.make() == sr.SRConfig.make(composite="sr_paper")
  hash(sr.SRConfig.make(method="smoothgrad", method_options={"key": 0}))
  with pytest.raises(ValueError, match=r"`composite` \(='epsilon_plus'\) "
                     r"applies to method 'lrp' only"):
    sr.SRConfig.make(method="gradient", composite="epsilon_plus")
  with pytest.raises(ValueError, match=r"Unknown attribution `method` "
                     r"\(='nope'\)"):
    sr.sr_map(model, variables, img, arch="vgg_tiny", method="nope")
  with pytest.raises(ValueError, match=r"Give either `config` or keyword"):
    sr.sr_map(model, variables, img, arch="vgg_tiny", config=sr.SRConfig(),
              method="gradient")


def test_result_displays_in_a_notebook(tiny):
  model, variables, img = tiny
  out = sr.sr_map(model, variables, img, arch="vgg_tiny")
  png = out._repr_png_()  # pylint: disable=protected-access
  assert png[:8] == b"\x89PNG\r\n\x1a\n"


def _explain(tmp_path, *flags):
  return subprocess.run(
      [sys.executable, "-m", "sr_jax.scripts.explain", "--sample",
       "--arch=demo_vgg_tiny", f"--out={tmp_path}", *flags],
      capture_output=True, text=True, timeout=600)


def test_explain_script_method_flags(tmp_path):
  done = _explain(tmp_path / "g", "--method=gradient")
  assert done.returncode == 0, done.stderr
  grad = np.load(tmp_path / "g" / "sample0.npz")
  model, variables = sr_jax.load_model("demo_vgg_tiny")
  from sr_jax.data import synthetic  # pylint: disable=import-outside-toplevel
  image = synthetic.sample(synthetic.SAMPLE_SEED, 0)[0]
  want = sr.sr_map(model, variables, image, arch="demo_vgg_tiny",
                   method="gradient")
  np.testing.assert_allclose(grad["relevance"], want.relevance, rtol=1e-5,
                             atol=1e-7)
  bad = _explain(tmp_path / "b", "--method_options=[1]")
  assert bad.returncode == 2
  assert "`--method_options` (='[1]') must be a JSON object" in bad.stderr
  assert not (tmp_path / "b" / "sample0.npz").exists()
