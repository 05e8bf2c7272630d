"""Tests of the batch runner (`sr_jax.runner`) and its absl script.

Most tests give `run` a stand-in `explain_fn` made of plain NumPy, so they
check the orchestration (grouping, padding, records, crash safety) quickly and
independently of the model; the end-to-end tests at the bottom run the real
script on the tiny VGG in a subprocess (SIGKILL and resume, bad files and the
exit status, 4 simulated devices).
"""

import fcntl
import functools
import importlib
import io as pyio
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from PIL import Image

from sr_jax import files, metrics, runner, sr, viz
from sr_jax.runner import journal
from tests.test_sr import assert_maps_close

# Batch sizes below are per device; one device keeps them what they say.
run_one = functools.partial(runner.run, num_devices=1)

REPO = Path(__file__).resolve().parents[1]


def fake_explain(crops, timings):
  """A deterministic stand-in for the model: per-crop NumPy arithmetic."""
  results = []
  for c in crops:
    f = c.astype(np.float64) / 255.0
    logits = np.zeros(10, np.float32)
    logits[:3] = f.mean((0, 1)) * 4.0
    p = np.exp(logits - logits.max())
    p /= p.sum()
    rel = (f - f.mean()).astype(np.float32)
    plane = np.abs(rel).sum(-1)
    g = np.abs(f.mean(-1) - f.mean())
    t = int(np.argmax(logits))
    results.append(sr.SRResult(
        image=c, logits=logits, target=t, probability=float(p[t]),
        relevance=rel, relevance_image=np.abs(rel),
        sr=(plane / plane.max()).astype(np.float32),
        image_saliency=(g / g.max()).astype(np.float32),
        edges=viz.canny(c)))
  timings["lrp"] = timings.get("lrp", 0.0) + 0.5
  return results


def write_images(folder, sizes, seed=0):
  folder.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(seed)
  names = []
  for i, s in enumerate(sizes):
    name = f"img{i}.png"
    Image.fromarray(rng.integers(0, 256, (s, s, 3), np.uint8)).save(folder / name)
    names.append(name)
  return names


def write_bad_files(folder):
  """Every kind of bad input; returns their names and the expected reasons."""
  good = folder / "img0.png"
  data = good.read_bytes()
  (folder / "truncated.png").write_bytes(data[:len(data) // 2])
  (folder / "corrupt.png").write_bytes(data[:40] + bytes(200) + data[240:])
  (folder / "empty.jpg").write_bytes(b"")
  (folder / "text.jpg").write_text("not an image", encoding="utf-8")
  (folder / "x.png").mkdir()
  return {"truncated.png": "truncated or corrupt", "corrupt.png": "corrupt",
          "empty.jpg": "empty", "text.jpg": "not an image",
          "x.png": "directory"}


def read_records(out):
  lines = (out / "results.jsonl").read_bytes().split(b"\n")
  assert lines[-1] == b"", "the log must end with a complete line"
  return [json.loads(line) for line in lines[:-1]]


def check_complete(inp, out, good, bad=()):
  """Every input has exactly one record, and every ok image its files."""
  records = read_records(out)
  names = [r["file"] for r in records]
  assert sorted(names) == sorted(list(good) + list(bad))
  assert len(set(names)) == len(names)
  assert not list(out.rglob("*.tmp"))
  by_name = {r["file"]: r for r in records}
  for name in good:
    assert by_name[name]["status"] == "ok"
    image = files.load_image(inp / name)
    [want] = fake_explain(image[None], {})
    with np.load(out / f"{name}.npz", allow_pickle=False) as z:
      for key, value in want.arrays().items():
        np.testing.assert_array_equal(z[key], value, err_msg=f"{name} {key}")
    with Image.open(out / f"{name}.png") as panel:
      assert panel.size[0] > 0
    assert by_name[name]["prediction"]["index"] == want.target
  failures = [json.loads(l) for l in
              (out / "failures.jsonl").read_text(encoding="utf-8").splitlines()]
  assert sorted(f["file"] for f in failures) == sorted(bad)
  return by_name


def test_run_writes_outputs_and_records(tmp_path):
  inp, out = tmp_path / "in", tmp_path / "out"
  # Two crop sizes: batches must group by size and pad to one fixed size.
  good = write_images(inp, [16, 24, 16, 16, 24])
  sizes = []

  def explain(crops, timings):
    sizes.append(crops.shape)
    return fake_explain(crops, timings)

  stream = pyio.StringIO()
  summary = run_one(str(inp), str(out), model="vgg_tiny", batch_size=2,
                    explain_fn=explain, stream=stream)
  assert sorted(sizes) == [(2, 16, 16, 3)] * 2 + [(2, 24, 24, 3)]
  by_name = check_complete(inp, out, good)
  ratios = []
  for name in good:
    rec = by_name[name]
    [want] = fake_explain(files.load_image(inp / name)[None], {})
    s = metrics.ssim_ratio(want.relevance, want.sr, want.image_saliency)
    np.testing.assert_allclose(
        [rec["ssim"]["ssim_lrp"], rec["ssim"]["ssim_sr"], rec["ssim"]["ratio"]],
        [s.ssim_lrp, s.ssim_sr, s.ratio], rtol=1e-12)
    ratios.append(s.ratio)
    assert rec["prediction"]["probability"] == pytest.approx(want.probability)
    assert rec["prediction"]["name"] is None  # vgg_tiny has no class names.
    t = rec["timings"]
    assert {"load", "lrp", "panel", "write", "ssim", "total"} <= set(t)
    # The batch's 0.5 s of "lrp" is shared by its real (not padded) images.
    assert t["lrp"] in (0.25, 0.5)
    assert t["total"] == pytest.approx(sum(v for k, v in t.items()
                                           if k != "total"), abs=1e-5)
  assert summary.done == 5 and summary.failed == 0 and summary.skipped == 0
  assert summary.mean_ssim_ratio == pytest.approx(np.mean(ratios))
  assert "5/5 images, 0 failed" in stream.getvalue()
  assert "images/s" in stream.getvalue() and "ETA" in stream.getvalue()


def test_rerun_skips_what_is_done(tmp_path):
  inp, out = tmp_path / "in", tmp_path / "out"
  good = write_images(inp, [16] * 3)
  run_one(str(inp), str(out), model="vgg_tiny", batch_size=2,
          explain_fn=fake_explain, stream=pyio.StringIO())
  before = (out / "results.jsonl").read_bytes()
  calls = []
  summary = run_one(str(inp), str(out), model="vgg_tiny", batch_size=2,
                    explain_fn=lambda c, t: calls.append(c) or [],
                    stream=pyio.StringIO())
  assert not calls
  assert (out / "results.jsonl").read_bytes() == before
  assert (summary.done, summary.failed, summary.skipped) == (3, 0, 3)
  # A new image is the only work of the next run.
  write_images(inp, [16] * 4)
  run_one(str(inp), str(out), model="vgg_tiny", batch_size=2,
          explain_fn=lambda c, t: calls.append(c) or fake_explain(c, t),
          stream=pyio.StringIO())
  assert len(calls) == 1
  check_complete(inp, out, good + ["img3.png"])


def test_bad_inputs_are_recorded_and_the_rest_succeed(tmp_path):
  inp, out = tmp_path / "in", tmp_path / "out"
  good = write_images(inp, [16] * 3)
  bad = write_bad_files(inp)
  summary = run_one(str(inp), str(out), model="vgg_tiny", batch_size=2,
                    explain_fn=fake_explain, stream=pyio.StringIO())
  by_name = check_complete(inp, out, good, bad)
  for name, reason in bad.items():
    assert by_name[name]["status"] == "failed"
    assert by_name[name]["stage"] == "load"
    assert reason in by_name[name]["reason"]
    assert name in by_name[name]["reason"]
  assert (summary.done, summary.failed) == (3, 5)


def test_explain_error_fails_its_batch_only(tmp_path):
  inp, out = tmp_path / "in", tmp_path / "out"
  good = write_images(inp, [16, 16, 24, 24])

  def explain(crops, timings):
    if crops.shape[1] == 24:
      raise FloatingPointError("boom")
    return fake_explain(crops, timings)

  summary = run_one(str(inp), str(out), model="vgg_tiny", batch_size=2,
                    explain_fn=explain, stream=pyio.StringIO())
  by_name = check_complete(inp, out, good[:2], good[2:])
  assert by_name["img2.png"]["stage"] == "explain"
  assert by_name["img2.png"]["reason"] == "FloatingPointError: boom"
  assert summary.failed == 2
  # Failed images stay failed on a plain re-run and are redone on request.
  summary = run_one(str(inp), str(out), model="vgg_tiny", batch_size=2,
                    explain_fn=explain, stream=pyio.StringIO())
  assert (summary.failed, summary.skipped) == (2, 4)
  summary = run_one(str(inp), str(out), model="vgg_tiny", batch_size=2,
                    explain_fn=fake_explain, retry_failed=True,
                    stream=pyio.StringIO())
  check_complete(inp, out, good)
  assert (summary.done, summary.failed, summary.skipped) == (4, 0, 2)


class Killed(BaseException):
  """Stands for SIGKILL: nothing after it runs, `except Exception` misses it."""


def test_killed_at_every_step_then_rerun_is_exactly_once(tmp_path, monkeypatch):
  """A crash during or after each file write / log append, then a re-run."""
  inp = tmp_path / "in"
  good = write_images(inp, [16] * 3)
  bad = {"text.jpg": None}
  (inp / "text.jpg").write_text("no", encoding="utf-8")
  real_write, real_commit = files.atomic_write, journal.Writer.commit
  ops = itertools.count()
  crash = {"at": -1}

  def point():
    """(crash now during this op, crash right after it)."""
    k = next(ops)
    return crash["at"] == 2 * k, crash["at"] == 2 * k + 1

  def atomic_write(path, data):
    during, after = point()
    if during:  # What a killed writer leaves: a partial temporary file.
      Path(path).with_name(f".{Path(path).name}.dead.tmp").write_bytes(
          data[:len(data) // 2])
      raise Killed
    real_write(path, data)
    if after:
      raise Killed

  def commit(self, rec):
    during, after = point()
    if during:  # Killed mid-line.
      line = (json.dumps(rec) + "\n").encode()
      os.write(self._fd, line[:len(line) // 2])
      raise Killed
    real_commit(self, rec)
    if after:
      raise Killed

  monkeypatch.setattr(files, "atomic_write", atomic_write)
  monkeypatch.setattr(journal.Writer, "commit", commit)

  def go(out):
    return run_one(str(inp), str(out), model="vgg_tiny", batch_size=2,
                   explain_fn=fake_explain, stream=pyio.StringIO())

  go(tmp_path / "count")
  total = next(ops)
  assert total >= 10  # run.json, failures view, 3 x (npz, png, log), 1 log.
  for at in range(2 * total):
    out = tmp_path / f"out{at}"
    crash["at"], ops = at, itertools.count()
    with pytest.raises(Killed):
      go(out)
    crash["at"] = -1
    summary = go(out)
    assert (summary.done, summary.failed) == (3, 1), at
    check_complete(inp, out, good, bad)


def test_recover_repairs_the_log(tmp_path):
  inp, out = tmp_path / "in", tmp_path / "out"
  good = write_images(inp, [16] * 4)
  run_one(str(inp), str(out), model="vgg_tiny", batch_size=4,
          explain_fn=fake_explain, stream=pyio.StringIO())
  lines = (out / "results.jsonl").read_bytes().splitlines(keepends=True)
  by_name = {json.loads(l)["file"]: l for l in lines}
  # img0 twice, img1 whose npz is gone, img2 cut mid-line, img3 missing;
  # plus a leftover temporary file.
  (out / "img1.png.npz").unlink()
  log = (by_name["img0.png"] + by_name["img0.png"] + b"not json\n"
         + by_name["img1.png"] + by_name["img2.png"][:30])
  (out / "results.jsonl").write_bytes(log)
  (out / ".img3.png.png.0123abcd.tmp").write_bytes(b"partial")
  calls = []
  run_one(str(inp), str(out), model="vgg_tiny", batch_size=4,
          explain_fn=lambda c, t: calls.append(len(c)) or fake_explain(c, t),
          stream=pyio.StringIO())
  check_complete(inp, out, good)
  assert calls == [4]  # img1, img2 and img3 redone (padded to 4), img0 not.


def test_another_configuration_or_a_busy_out_is_refused(tmp_path):
  inp, out = tmp_path / "in", tmp_path / "out"
  write_images(inp, [16])
  run_one(str(inp), str(out), model="vgg_tiny", explain_fn=fake_explain,
          stream=pyio.StringIO())
  with pytest.raises(ValueError, match=r"another configuration.*composite"):
    run_one(str(inp), str(out), model="vgg_tiny", composite="epsilon_plus",
            explain_fn=fake_explain, stream=pyio.StringIO())
  with open(out / ".lock", "w", encoding="utf-8") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    with pytest.raises(RuntimeError, match=r"`out` .* in use by another run"):
      run_one(str(inp), str(out), model="vgg_tiny", explain_fn=fake_explain,
              stream=pyio.StringIO())


def test_default_uses_every_device(tmp_path):
  """Without `num_devices` a batch holds `batch_size` images per device."""
  inp = tmp_path / "in"
  write_images(inp, [16] * 3)
  sizes = []
  runner.run(str(inp), str(tmp_path / "o"), model="vgg_tiny", batch_size=2,
            explain_fn=lambda c, t: sizes.append(len(c)) or fake_explain(c, t),
            stream=pyio.StringIO())
  per_batch = 2 * len(jax.devices())
  assert sizes == [per_batch] * -(-3 // per_batch)


def test_arguments_are_checked(tmp_path):
  inp = tmp_path / "in"
  write_images(inp, [16])
  with pytest.raises(ValueError, match=r"`num_devices` \(=99\) must be in 1\.\."):
    runner.run(str(inp), str(tmp_path / "o"), model="vgg_tiny", num_devices=99,
              explain_fn=fake_explain)
  with pytest.raises(ValueError, match=r"`batch_size` \(=0\) must be >= 1"):
    run_one(str(inp), str(tmp_path / "o"), model="vgg_tiny", batch_size=0,
            explain_fn=fake_explain)
  assert runner.parse_options('{"max_side": null, "k": 8}') == {
      "max_side": None, "k": 8}
  with pytest.raises(ValueError, match=r"`saliency_options` \(='\[1\]'\) "
                     r"must be a JSON object"):
    runner.parse_options("[1]")
  with pytest.raises(ValueError, match=r"`saliency_options` \(='\{'\) is "
                     r"not JSON"):
    runner.parse_options("{")
  (tmp_path / "none").mkdir()
  with pytest.raises(ValueError, match=r"`input` \(=.*none'\) names no image"):
    run_one(str(tmp_path / "none"), str(tmp_path / "o"), model="vgg_tiny",
            explain_fn=fake_explain)


def test_glob_input_names_and_out_inside_input(tmp_path):
  root = tmp_path / "data"
  write_images(root / "a", [16])
  write_images(root / "b", [16], seed=1)
  out = root / "out"  # Inside the input tree: its PNGs are never inputs.
  for _ in range(2):
    run_one(str(root / "**" / "*.png"), str(out), model="vgg_tiny",
            explain_fn=fake_explain, stream=pyio.StringIO())
  assert sorted(r["file"] for r in read_records(out)) == ["a/img0.png",
                                                           "b/img0.png"]
  assert (out / "a" / "img0.png.npz").is_file()
  assert (out / "b" / "img0.png.png").is_file()


# End to end: the real script on the tiny VGG, in subprocesses that share a
# persistent compilation cache (the first one compiles, the others reuse it).

@pytest.fixture(scope="module")
def script(tmp_path_factory):
  cache = tmp_path_factory.mktemp("jax_cache")

  def start(*args, devices=None):
    env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(cache))
    if devices:
      env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    cmd = [sys.executable, "-m", "sr_jax.scripts.batch", "--model=vgg_tiny",
           '--saliency_options={"max_side": null}', *args]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
  return start


def test_script_sigkill_then_rerun(script, tmp_path):
  inp, out = tmp_path / "in", tmp_path / "out"
  good = write_images(inp, [32] * 10)
  proc = script(f"--input={inp}", f"--out={out}", "--batch_size=1")
  log = out / "results.jsonl"
  deadline = time.monotonic() + 240
  while not (log.exists() and log.read_bytes().count(b"\n") >= 1):
    assert proc.poll() is None, proc.communicate()
    assert time.monotonic() < deadline
    time.sleep(0.005)
  proc.send_signal(signal.SIGKILL)
  proc.communicate()
  assert log.read_bytes().count(b"\n") < len(good), "the kill came too late"
  proc = script(f"--input={inp}", f"--out={out}", "--batch_size=4")
  stdout, stderr = proc.communicate(timeout=240)
  assert proc.returncode == 0, stderr
  assert "done 10, failed 0" in stdout
  records = read_records(out)
  assert sorted(r["file"] for r in records) == good
  assert all(r["status"] == "ok" for r in records)
  assert not list(out.rglob("*.tmp"))
  for name in good:
    with np.load(out / f"{name}.npz", allow_pickle=False) as z:
      assert z["sr"].shape == (32, 32)
    assert (out / f"{name}.png").is_file()


@pytest.fixture(scope="module")
def bad_folder_run(script, tmp_path_factory):
  """The script on a folder with bad files, on one device."""
  root = tmp_path_factory.mktemp("bad")
  inp = root / "in"
  good = write_images(inp, [32] * 5)
  bad = write_bad_files(inp)
  proc = script(f"--input={inp}", f"--out={root / 'out'}", "--batch_size=2")
  stdout, stderr = proc.communicate(timeout=240)
  return inp, root / "out", good, bad, proc.returncode, stdout, stderr


def test_script_bad_files_exit_status(bad_folder_run):
  _, out, good, bad, returncode, stdout, stderr = bad_folder_run
  assert returncode == 1, stderr
  assert "done 5, failed 5" in stdout
  assert "images/s" in stderr and "ETA" in stderr
  failures = [json.loads(l) for l in
              (out / "failures.jsonl").read_text(encoding="utf-8").splitlines()]
  assert sorted(f["file"] for f in failures) == sorted(bad)
  records = read_records(out)
  assert sorted(r["file"] for r in records if r["status"] == "ok") == good


def test_script_four_devices_equal_one(script, bad_folder_run, tmp_path):
  inp, plain, good, _, _, _, _ = bad_folder_run
  outs = {}
  for n in (1, 4):  # Both in a process that sees 4 CPU devices.
    outs[n] = tmp_path / f"out{n}"
    # 2 images per device and batch, as in the plain run: on 4 devices the
    # 5 images make one batch of 8, 3 of them padding.
    proc = script(f"--input={inp}", f"--out={outs[n]}", "--batch_size=2",
                  f"--num_devices={n}", devices=4)
    stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 1, stderr  # The bad files fail, as before.
    assert "done 5, failed 5" in stdout
  for name in good:
    with np.load(outs[1] / f"{name}.npz") as one, \
         np.load(outs[4] / f"{name}.npz") as four, \
         np.load(plain / f"{name}.npz") as ref:
      for key in one.files:  # Sharding changes nothing, bit for bit.
        np.testing.assert_array_equal(four[key], one[key], err_msg=key)
      # A process with another device count (hence thread pools) agrees to
      # float32 rounding.
      assert_maps_close(dict(four), dict(ref))


def test_deprecated_alias_warns_and_still_works(tmp_path):
  sys.modules.pop("sr_jax.batch", None)
  with pytest.warns(DeprecationWarning, match=r"sr_jax\.batch is deprecated.*"
                    r"sr_jax\.runner"):
    batch = importlib.import_module("sr_jax.batch")
  assert batch.run is runner.run and batch.RESULTS == "results.jsonl"
  inp = tmp_path / "in"
  good = write_images(inp, [16] * 2)
  summary = batch.run(str(inp), str(tmp_path / "out"), model="vgg_tiny",
                      num_devices=1, explain_fn=fake_explain,
                      stream=pyio.StringIO())
  assert (summary.done, summary.failed) == (2, 0)
  check_complete(inp, tmp_path / "out", good)
  with pytest.raises(AttributeError, match=r"Progress was replaced by tqdm"):
    batch.Progress  # pylint: disable=pointless-statement
