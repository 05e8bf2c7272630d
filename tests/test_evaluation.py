"""Tests for sr_jax.evaluation: the run, its outputs, resuming, chance level.

The runs use dataset seeds 7 to 9, never the held-out `EVALUATION_SEED`.
"""

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sr_jax import attribution, evaluation, files, metrics
from sr_jax.data import synthetic
from sr_jax.evaluation import aggregate, data as data_lib, run as run_lib
from sr_jax.models.loading import load_model
from sr_jax.models.preprocess import normalize

ROOT = Path(__file__).resolve().parents[1]
SINGLE = ROOT / "weights" / "demo_vgg_single.safetensors"
MAIN_KEYS = ("pointing", "iou_auc", "relevance_mass", "rank_accuracy",
             "ssim_saliency", "aopc", "class_sensitivity",
             "randomization_cascading_spearman",
             "randomization_independent_spearman",
             "randomization_cascading_ssim", "randomization_independent_ssim",
             "gini", "entropy")


def _lines(path):
  return path.read_bytes().splitlines(keepends=True)


def _unloaded():
  return os.getloadavg()[0] < (os.cpu_count() or 1)


@pytest.mark.skipif(not SINGLE.exists(), reason="no single-variant weights")
def test_four_images_two_methods(tmp_path):
  """The run on 4 images and 2 methods: its files, keys and lines; under a
  minute on an unloaded machine (the timing is only checked there)."""
  start = time.perf_counter()
  summary = evaluation.evaluate(
      tmp_path, n=4, methods="gradient,sr:gradient", seed=7, single_n=4,
      protocol=evaluation.Protocol(sanity_n=2, batch_size=4),
      stream=io.StringIO())
  seconds = time.perf_counter() - start
  if _unloaded():
    assert seconds < 60, seconds
  for name in ("results.json", "results.md", "results.jsonl",
               "evaluation.png", "evaluation_gallery.png"):
    assert (tmp_path / name).is_file(), name
  assert summary.computed == 16 and summary.reused == 0
  lines = [json.loads(l) for l in _lines(tmp_path / "results.jsonl")]
  assert sorted((r["stage"], r["variant"]) for r in lines) == sorted(
      [(s, v) for s in ("main", "single") for v in ("gradient", "sr:gradient")
       for _ in range(4)])
  r = json.loads((tmp_path / "results.json").read_text())
  for key in ("dataset", "held_out_seed", "models", "protocol", "bootstrap",
              "references", "measures", "methods", "scores", "curves",
              "timing"):
    assert key in r, key
  assert r["held_out_seed"] == 7 and r["dataset"]["main"]["n"] == 4
  assert r["dataset"]["single"]["variant"] == "single"
  assert r["protocol"]["pointing_tolerance_px"] == pytest.approx(15 * 64 / 224)
  assert r["protocol"]["baseline"] == "mean"
  assert r["bootstrap"]["seed"] == 0
  assert r["references"]["paper_ssim_ratio"]["value"] == 1.70
  for v in ("gradient", "sr:gradient"):
    row = r["scores"][v]
    for key in MAIN_KEYS + ("iou_auc_single", "pointing_single"):
      s = row[key]
      assert s["low"] <= s["estimate"] <= s["high"], (v, key)
  assert "ssim_ratio" in r["scores"]["sr:gradient"]
  assert "ssim_ratio" not in r["scores"]["gradient"]
  # Far from chance where the gradient should be: relevance on the parts.
  mass = r["scores"]["gradient"]["relevance_mass"]
  assert mass["low"] > 2 * mass["chance"]
  assert r["scores"]["gradient"]["class_sensitivity"]["n"] == 2
  assert "`sr:gradient`" in (tmp_path / "results.md").read_text()


def test_killed_run_resumes_without_recomputing(tmp_path):
  """SIGKILL mid-run, then a re-run: the lines written stay as they were
  (a partial last line is dropped) and only the missing ones are computed."""
  out = tmp_path / "out"
  args = [sys.executable, "-m", "sr_jax.scripts.evaluate", f"--out={out}",
          "--n=8", "--methods=gradient,random", "--seed=8", "--batch_size=1",
          "--sanity_n=8", "--single_n=0", "--nofigures"]
  proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  journal = out / "results.jsonl"
  deadline = time.time() + 300
  while time.time() < deadline and proc.poll() is None:
    if journal.exists() and len(_lines(journal)) >= 3:
      break
    time.sleep(0.02)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  before = [l for l in _lines(journal) if l.endswith(b"\n")]
  assert 3 <= len(before) < 16, len(before)
  with open(journal, "ab") as f:  # a line cut short by the kill
    f.write(b'{"file": "main/gradient/synth')
  summary = evaluation.evaluate(
      out, n=8, methods="gradient,random", seed=8, single_n=0,
      protocol=evaluation.Protocol(sanity_n=8, batch_size=1), figures=False,
      stream=io.StringIO())
  after = _lines(journal)
  assert after[:len(before)] == before
  assert len(after) == 16
  assert len({json.loads(l)["file"] for l in after}) == 16
  assert summary.reused == len(before)
  assert summary.computed == 16 - len(before)
  again = evaluation.evaluate(
      out, n=8, methods="gradient,random", seed=8, single_n=0,
      protocol=evaluation.Protocol(sanity_n=8, batch_size=1), figures=False,
      stream=io.StringIO())
  assert (again.computed, again.reused) == (0, 16)
  assert _lines(journal) == after


def test_random_map_stays_at_chance_on_every_measure(tmp_path):
  """Uniform noise scores its chance level (or the noise reference) within
  its interval on every measure.

  With 16 measures, 95% intervals would miss a true chance level somewhere
  about half the time by chance alone, so the family is tested at
  1 - 0.05 / 16 (Bonferroni): 99.7% intervals.
  """
  evaluation.evaluate(
      tmp_path, n=32, methods="random", seed=9, single_n=0,
      protocol=evaluation.Protocol(sanity_n=32, batch_size=32,
                                   level=1 - 0.05 / 16, resamples=4000),
      figures=False, stream=io.StringIO())
  scores = json.loads((tmp_path / "results.json").read_text())["scores"]
  keys = MAIN_KEYS + (("segmentation_iou",)
                      if "segmentation_iou" in scores["random"] else ())
  for key in keys:
    s = scores["random"][key]
    assert s["chance"] is not None, key
    assert s["low"] <= s["chance"] <= s["high"], (key, s)


def test_the_real_model_path_with_a_folder_of_images_and_masks(tmp_path):
  """`images=` and `masks=` folders with a random-weight model."""
  images, labels, masks = synthetic.make_batch(8, 0, 3, size=32)
  (tmp_path / "img").mkdir()
  (tmp_path / "msk").mkdir()
  for i, (im, m) in enumerate(zip(images, masks)):
    files.save_png(tmp_path / "img" / f"f{i}.png", im)
    files.save_png(tmp_path / "msk" / f"f{i}.png",
                   m.astype(np.uint8) * 255)
  out = tmp_path / "out"
  summary = evaluation.evaluate(
      out, model="demo_vgg_tiny", images=tmp_path / "img",
      masks=tmp_path / "msk", n=3, methods="gradient,sr:gradient",
      protocol=evaluation.Protocol(sanity_n=1, batch_size=3),
      stream=io.StringIO())
  assert summary.computed == 6
  r = json.loads((out / "results.json").read_text())
  assert r["dataset"]["main"]["source"] == "folder"
  assert r["models"]["main"]["weights"].startswith("random")
  assert set(r["scores"]) == {"gradient", "sr:gradient"}
  assert r["protocol"]["pointing_tolerance_px"] == pytest.approx(15 * 32 / 224)
  lines = [json.loads(l) for l in _lines(out / "results.jsonl")]
  assert {l["image"] for l in lines} == {"f0", "f1", "f2"}
  assert all(l["label"] is None for l in lines)


def test_folder_masks_follow_the_crop_of_a_resizing_architecture(tmp_path):
  """A mask is resized and cropped as the image is (VGG-16: 256, then 224)."""
  image = np.zeros((300, 400, 3), np.uint8)
  image[100:200, 150:260] = 255
  mask = image[..., 0] > 0
  files.save_png(tmp_path / "a.png", image)
  (tmp_path / "m").mkdir()
  files.save_png(tmp_path / "m" / "a.png", mask.astype(np.uint8) * 255)
  data = data_lib.folder_set(tmp_path / "a.png", tmp_path / "m", arch="vgg16")
  assert data.images.shape == (1, 224, 224, 3)
  bright = data.images[0, ..., 0] > 127
  assert np.mean(bright != data.masks[0]) < 0.005
  files.save_png(tmp_path / "b.png", image)
  with pytest.raises(ValueError, match="has no mask named b.png"):
    data_lib.folder_set(tmp_path / "b.png", tmp_path / "m", arch="vgg16")


def test_methods_are_picked_up_by_name_and_missing_ones_skipped(monkeypatch):
  def needs_layer(model, variables, x, *, layer, target=None):
    del model, variables, layer, target
    return x

  monkeypatch.setitem(attribution.METHODS, "needs_layer", needs_layer)
  notes = []
  out = evaluation.resolve("gradient,nope,needs_layer,sr:gradient,gradient",
                           seed=0, log=notes.append)
  assert [v.name for v in out] == ["gradient", "sr:gradient"]
  assert any("'nope': not a registered method" in n for n in notes)
  assert any("'needs_layer': needs option(s) layer" in n for n in notes)
  everything = evaluation.all_names()
  assert "needs_layer" in everything and "sr:needs_layer" in everything
  assert "random" in everything
  assert "smooth:integrated_gradients" not in everything
  with pytest.raises(ValueError, match="leaves no method that can run"):
    evaluation.resolve("nope", seed=0)


def test_deep_shap_gets_a_training_background_and_differs_from_deeplift():
  # Without a background Deep SHAP's baseline is the zero input, exactly
  # DeepLIFT's; the run binds training images (never the held-out seed).
  bg = run_lib.deepshap_background("demo_vgg_tiny", count=4)
  assert bg.shape == (4, 32, 32, 3) and bg.dtype == np.float32
  images, _, _ = synthetic.make_batch(synthetic.TRAIN_SEED, 0, 4, size=32)
  np.testing.assert_array_equal(bg, _tiny_input(images))
  got = {v.name: v for v in evaluation.resolve(
      "deeplift,deepshap,meta:deepshap", seed=0, background=bg)}
  assert got["deeplift"].background == 0
  assert got["deepshap"].background == got["meta:deepshap"].background == 4
  assert got["deepshap"].describe()["background_images"] == 4
  model, variables = load_model("demo_vgg_tiny", None)
  x = _tiny_input(synthetic.make_batch(7, 0, 2, size=32)[0])
  a = np.asarray(got["deeplift"].fn(model, variables, x, target=0))
  b = np.asarray(got["deepshap"].fn(model, variables, x, target=0))
  c = np.asarray(attribution.get_method("deepshap")(
      model, variables, x, target=0, background=bg))
  np.testing.assert_allclose(b, c, rtol=1e-6, atol=1e-7)
  assert np.abs(a - b).max() > 1e-3 * np.abs(a).max()


def _tiny_input(images):
  return np.asarray(normalize(images, "demo_vgg_tiny"))


def test_pointing_class_mean_and_its_interval():
  hits = np.array([1, 1, 0, 0, 0, 1.0])
  labels = np.array([0, 0, 0, 0, 1, 2])
  # Classes: 0 -> 2/4, 1 -> 0, 2 -> 1; their mean is 0.5.
  stat = aggregate.class_mean(hits, labels)
  assert stat(np.arange(6.0)) == pytest.approx(0.5)
  maps = np.zeros((6, 4, 4))
  maps[:, 0, 0] = 1.0
  masks = np.zeros((6, 4, 4), bool)
  masks[hits == 1, 0, 0] = True
  masks[hits == 0, 3, 3] = True
  want = metrics.pointing_game_accuracy(maps, masks, labels, tolerance=0)
  assert stat(np.arange(6.0)) == pytest.approx(want.accuracy)
  records = [{"pointing": h, "target_class": int(y), "pointing_chance": 0.1}
             for h, y in zip(hits, labels)]
  s = aggregate.score(records, aggregate.BY_KEY["pointing"], seed=0)
  assert s["estimate"] == pytest.approx(0.5)
  assert 0 <= s["low"] <= s["high"] <= 1
  assert s["chance"] == pytest.approx(0.1)


def test_a_run_under_other_settings_is_refused(tmp_path):
  kwargs = dict(n=2, methods="random", seed=7, single_n=0, figures=False,
                stream=io.StringIO())
  evaluation.evaluate(tmp_path, protocol=evaluation.Protocol(
      sanity_n=0, batch_size=2), **kwargs)
  with pytest.raises(ValueError, match=r"other settings \(protocol.steps\)"):
    evaluation.evaluate(tmp_path, protocol=evaluation.Protocol(
        sanity_n=0, batch_size=2, steps=8), **kwargs)


def test_the_script_reports_bad_values_in_one_line(tmp_path):
  proc = subprocess.run(
      [sys.executable, "-m", "sr_jax.scripts.evaluate", f"--out={tmp_path}",
       "--methods=nope", "--n=1"], cwd=ROOT, capture_output=True, text=True,
      timeout=300, check=False)
  assert proc.returncode == 2
  err = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
  assert len(err) == 1 and "leaves no method" in err[0], proc.stderr
  with pytest.raises(ValueError, match=r"`n` \(=0\) must be"):
    run_lib.evaluate(tmp_path, n=0)
