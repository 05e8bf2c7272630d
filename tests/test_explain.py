"""Tests of the `explain` absl script, run as users run it (a subprocess)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from PIL import Image

import sr_jax
from sr_jax import explain as explain_lib
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
  # Only the predictions and the files written: no backend or log lines.
  assert len(proc.stdout.splitlines()) == 6
  assert proc.stdout.splitlines()[5].startswith("explained ")
  assert proc.stderr == ""
  assert not re.search(r"TPU|backend", proc.stdout + proc.stderr)


def test_explain_errors(explain, tmp_path):
  proc = explain(f"--image={tmp_path / 'missing.png'}", "--model=vgg_tiny")
  assert proc.returncode == 2
  assert re.search(r"error: `path` \(.*missing.png'\) does not exist",
                   proc.stderr)
  proc = explain("--model=vgg_tiny")
  assert proc.returncode == 1
  assert "Give --image=FILE, or --sample." in proc.stderr


def write_image(tmp_path, seed=5):
  """A random 32x32 RGB image (vgg_tiny's input size) as `<tmp>/cat.png`."""
  image = np.random.default_rng(seed).integers(0, 256, (32, 32, 3), np.uint8)
  Image.fromarray(image).save(tmp_path / "cat.png")
  return image, tmp_path / "cat.png"


def load_npz(path):
  with np.load(path, allow_pickle=False) as z:
    return {k: z[k] for k in z.files}


def test_explain_with_another_composite(explain, tmp_path):
  image, path = write_image(tmp_path)
  out = tmp_path / "out"
  proc = explain(f"--image={path}", "--model=vgg_tiny", f"--out={out}",
                 "--target=3", "--relevance_image=sum_abs",
                 "--composite=epsilon_plus_flat",
                 '--saliency_options={"max_side": null}')
  assert proc.returncode == 0, proc.stderr
  got = load_npz(out / "cat.png.npz")
  assert got["relevance"].shape == (32, 32, 3)
  assert np.all(np.isfinite(got["relevance"]))
  # The script's default weights for vgg_tiny are the PRNGKey(0) ones.
  model, variables = sr_jax.load_model("vgg_tiny")
  opts = dict(arch="vgg_tiny", target=3, relevance_image="sum_abs",
              max_side=None)
  want = sr.sr_map(model, variables, image, composite="epsilon_plus_flat",
                   **opts)
  assert_maps_close(got, want.arrays())
  # ... and not the default composite's result (far beyond rounding).
  default = sr.sr_map(model, variables, image, **opts)
  scale = np.abs(default.relevance).max()
  assert np.abs(got["relevance"] - default.relevance).max() > 0.1 * scale
  assert "explained 3;" in proc.stdout.splitlines()[5]


def test_explain_with_a_weights_file(explain, tmp_path):
  image, path = write_image(tmp_path)
  # Weights other than the default (PRNGKey(0)) ones, with class names.
  model, variables = sr_jax.load_model("vgg_tiny", key=jax.random.PRNGKey(7))
  names = [f"kind{i}" for i in range(10)]
  weights = weights_lib.save(tmp_path / "w" / "tiny.safetensors", variables,
                             arch="vgg_tiny",
                             metadata={"classes": json.dumps(names)})
  out = tmp_path / "out"
  proc = explain(f"--image={path}", "--model=vgg_tiny", f"--weights={weights}",
                 f"--out={out}", '--saliency_options={"max_side": null}')
  assert proc.returncode == 0, proc.stderr
  got = load_npz(out / "cat.png.npz")
  # The logits are those of the weights in the file, loaded in this process.
  model, loaded = weights_lib.load(weights)
  x = sr_jax.preprocess(image, "vgg_tiny")
  logits = np.asarray(model.apply(loaded, x))[0]
  np.testing.assert_allclose(got["logits"], logits, rtol=1e-5, atol=1e-6)
  default_logits = np.asarray(
      model.apply(sr_jax.load_model("vgg_tiny")[1], x))[0]
  assert np.argmax(logits) != np.argmax(default_logits)  # 5, not 2.
  assert int(got["target"]) == int(np.argmax(logits))
  want = sr.sr_map(model, loaded, image, arch="vgg_tiny", max_side=None)
  assert_maps_close(got, want.arrays())
  # The class names come from the file's metadata.
  p = softmax(got["logits"])
  order = np.argsort(-p)[:5]
  lines = proc.stdout.splitlines()
  assert lines[:5] == [f"{label(i, names)} {p[i]:.2f}" for i in order]
  assert f"explained {label(int(np.argmax(logits)), names)};" in lines[5]


def test_explain_weights_and_composite_errors(explain, tmp_path):
  _, path = write_image(tmp_path)
  out = tmp_path / "out"
  missing = tmp_path / "missing.safetensors"
  proc = explain(f"--image={path}", "--model=vgg_tiny", f"--weights={missing}",
                 f"--out={out}")
  assert proc.returncode == 2
  assert re.search(r"error: `weights` \(='.*/missing\.safetensors'\) is not "
                   r"a file; give a safetensors weights file", proc.stderr), (
                       proc.stderr)
  # A file of another architecture.
  _, other = sr_jax.load_model("demo_vgg_tiny", key=jax.random.PRNGKey(0))
  wrong = weights_lib.save(tmp_path / "demo.safetensors", other,
                           arch="demo_vgg_tiny")
  proc = explain(f"--image={path}", "--model=vgg_tiny", f"--weights={wrong}",
                 f"--out={out}")
  assert proc.returncode == 2
  assert re.search(r"error: Weights in '.*/demo\.safetensors' \(the file says "
                   r"arch='demo_vgg_tiny'\) do not fit architecture "
                   r"`vgg_tiny`", proc.stderr), proc.stderr
  # An unknown composite.
  proc = explain(f"--image={path}", "--model=vgg_tiny", "--composite=nope",
                 f"--out={out}")
  assert proc.returncode == 2
  assert re.search(r"error: Unknown `composite` \(='nope'\); known "
                   r"composites: .*epsilon_plus_flat", proc.stderr), proc.stderr
  assert not list(out.glob("*.npz"))


# --- the shared app helper (sr_jax/scripts/_app.py) ------------------------


def _run_app(*flags, raise_error=None):
  """A throwaway app on `_app.run` that logs as JAX does while it looks for
  backends, then returns 3 or raises `raise_error`."""
  code = (
      "import logging, sys\n"
      "from sr_jax.scripts import _app\n"
      "def main(argv):\n"
      "  logging.getLogger('jax._src.xla_bridge').info("
      "'probe: Unable to initialize backend')\n"
      f"  if {raise_error!r}: raise ValueError({raise_error!r})\n"
      "  print('result')\n"
      "  return 3\n"
      "_app.run(main)\n")
  return subprocess.run([sys.executable, "-c", code, *flags], cwd=REPO,
                        capture_output=True, text=True, timeout=120,
                        check=False)


def test_app_keeps_backend_logs_quiet_unless_verbosity_asks():
  quiet = _run_app()
  assert (quiet.returncode, quiet.stdout, quiet.stderr) == (3, "result\n", "")
  loud = _run_app("--verbosity=0")
  assert loud.returncode == 3
  assert "probe: Unable to initialize backend" in loud.stderr


def test_app_turns_a_value_error_into_one_line_and_exit_2():
  proc = _run_app(raise_error="bad `x` (=1)\n  must be 2")
  assert proc.returncode == 2
  assert proc.stderr.splitlines() == ["error: bad `x` (=1) must be 2"]
  assert "Traceback" not in proc.stderr and proc.stdout == ""


@pytest.mark.parametrize("script,args,message", [
    ("train_demo", ["--steps=0"], "error: `steps` (=0) must be >= 1."),
    ("explain", ["--image=sample", "--model=nope"],
     "error: Unknown architecture `arch` (='nope')"),
])
def test_every_script_reports_value_errors_in_one_line(tmp_path, script, args,
                                                       message):
  proc = subprocess.run(
      [sys.executable, "-m", f"sr_jax.scripts.{script}", *args,
       f"--out={tmp_path / 'out'}"], cwd=REPO, capture_output=True,
      text=True, timeout=300, check=False)
  assert proc.returncode == 2, proc.stderr
  assert len(proc.stderr.splitlines()) == 1
  assert proc.stderr.startswith(message), proc.stderr
  assert not list(tmp_path.iterdir())


# --- the library behind the script (sr_jax/explain.py) ---------------------


def test_library_explain_chooses_input_model_and_checks_weights(tmp_path):
  image, path = write_image(tmp_path)
  assert explain_lib.default_model("sample") == "demo_vgg"
  assert explain_lib.default_model(path) == "vgg16"
  assert explain_lib.default_model("sample", "vgg_tiny") == "vgg_tiny"
  pixels, name, truth = explain_lib.load_input("sample", sample_index=1)
  want, want_truth, _ = synthetic.sample(synthetic.SAMPLE_SEED, 1)
  np.testing.assert_array_equal(pixels, want)
  assert (name, truth) == ("sample1", want_truth)
  pixels, name, truth = explain_lib.load_input(path)
  np.testing.assert_array_equal(pixels, image)
  assert (name, truth) == ("cat.png", None)
  with pytest.raises(ValueError, match=r"`weights` \(='.*nope'\) is not a "
                     r"file"):
    explain_lib.explain(path, tmp_path / "out", model="vgg_tiny",
                        weights=tmp_path / "nope")
  assert not (tmp_path / "out").exists()


def test_library_explain_writes_and_reports(tmp_path):
  image, path = write_image(tmp_path)
  out = tmp_path / "out"
  done = explain_lib.explain(path, out, model="vgg_tiny", target=3,
                             saliency_options={"max_side": None})
  assert (done.png, done.npz) == (out / "cat.png.png", out / "cat.png.npz")
  assert done.png.is_file() and done.model == "vgg_tiny"
  model, variables = sr_jax.load_model("vgg_tiny")
  want = sr.sr_map(model, variables, image, arch="vgg_tiny", target=3,
                   max_side=None)
  assert_maps_close(load_npz(done.npz), want.arrays())
  p = softmax(want.logits)
  order = np.argsort(-p)[:5]
  assert explain_lib.report(done) == [f"{i} {p[i]:.2f}" for i in order] + [
      f"explained 3; wrote {out / 'cat.png.png'} and .npz"]
