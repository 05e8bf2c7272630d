"""Tests of the `explain` absl script, run as users run it (a subprocess)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import sr_jax
from sr_jax import sr
from sr_jax import weights as weights_lib
from sr_jax.classes import label
from sr_jax.data import synthetic
from tests.test_sr import assert_maps_close

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def explain(tmp_path_factory):
  """Runs the script; its runs share a persistent compilation cache."""
  cache = tmp_path_factory.mktemp("jax_cache")

  def run(*args):
    return subprocess.run(
        [sys.executable, "-m", "sr_jax.scripts.explain", *args], cwd=REPO,
        env=dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(cache)),
        capture_output=True, text=True, timeout=300, check=False)
  return run


def softmax(logits):
  p = np.exp(np.asarray(logits, np.float64) - np.max(logits))
  return p / p.sum()


def test_explain_an_image_file(explain, tmp_path):
  image = np.random.default_rng(5).integers(0, 256, (32, 32, 3), np.uint8)
  Image.fromarray(image).save(tmp_path / "cat.png")
  out = tmp_path / "out"
  proc = explain(f"--image={tmp_path / 'cat.png'}", "--model=vgg_tiny",
                 f"--out={out}", "--target=3", "--relevance_image=sum_abs",
                 '--saliency_options={"max_side": null}')
  assert proc.returncode == 0, proc.stderr
  with np.load(out / "cat.png.npz", allow_pickle=False) as z:
    got = {k: z[k] for k in z.files}
  assert (out / "cat.png.png").is_file()
  # The same result in this process, from the library.
  model, variables = sr_jax.load_model("vgg_tiny")
  want = sr.sr_map(model, variables, image, arch="vgg_tiny", target=3,
                   relevance_image="sum_abs", max_side=None)
  assert_maps_close(got, want.arrays())
  # The top 5, "index probability" (vgg_tiny has no class names).
  lines = proc.stdout.splitlines()
  p = softmax(got["logits"])
  order = np.argsort(-p)[:5]
  assert lines[:5] == [f"{i} {p[i]:.2f}" for i in order]
  assert "explained 3;" in lines[5]


def test_explain_the_sample_without_a_file(explain, tmp_path):
  out = tmp_path / "out"
  proc = explain("--sample", f"--out={out}",
                 '--saliency_options={"max_side": null}')
  assert proc.returncode == 0, proc.stderr
  image, _, _ = synthetic.sample(synthetic.SAMPLE_SEED, 0)
  with np.load(out / "sample0.npz", allow_pickle=False) as z:
    np.testing.assert_array_equal(z["image"], image)
    p = softmax(z["logits"])
  assert (out / "sample0.png").is_file()
  names = sr.class_names("demo_vgg", weights_lib.bundled_path("demo_vgg"))
  order = np.argsort(-p)[:5]
  want = [f"{label(i, names)} {p[i]:.2f}" for i in order]
  assert proc.stdout.splitlines()[:5] == want


def test_explain_errors(explain, tmp_path):
  proc = explain(f"--image={tmp_path / 'missing.png'}", "--model=vgg_tiny")
  assert proc.returncode == 2
  assert re.search(r"error: `path` \(.*missing.png'\) does not exist",
                   proc.stderr)
  proc = explain("--model=vgg_tiny")
  assert proc.returncode == 1
  assert "Give --image=FILE, or --sample." in proc.stderr
