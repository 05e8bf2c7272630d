"""Multi-host batch runs, as two local CPU processes on a loopback coordinator.

Each test starts the real script (`sr_jax.scripts.batch`) on the tiny VGG in
subprocesses with `--coordinator_address=127.0.0.1:<free port>
--num_processes=2 --process_id=<0|1>`, so `jax.distributed.initialize` runs
as on a cluster, with one CPU device per process. The reference is a
single-process run of the same folder. All runs share one persistent
compilation cache. The whole file costs about 55 s of CPU time (four runs,
six processes, mostly start-up and compilation); on a shared 2-core machine
it took 2.5 to 4 minutes of wall time, about twice test_batch.py's
test_script_sigkill_then_rerun in the same session.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.test_batch import read_records, write_images

REPO = Path(__file__).resolve().parents[1]
NUM_IMAGES = 12  # 6 per process, 3 batches of 2 each.
ARGS = ("--model=vgg_tiny", '--saliency_options={"max_side": null}',
        "--batch_size=2", "--num_devices=1")
TIMEOUT = 300


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
  cache = tmp_path_factory.mktemp("jax_cache")
  return dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(cache),
              SR_JAX_CPU_DEVICES="1")


class Script:
  """One process of the batch script, its output going to files."""

  def __init__(self, env, inp, out, logs, *, process=None, count=None,
               port=None):
    tag = "single" if count is None else f"p{process}of{count}"
    self.stdout, self.stderr = logs / f"{tag}.out", logs / f"{tag}.err"
    cmd = [sys.executable, "-m", "sr_jax.scripts.batch", *ARGS,
           f"--input={inp}", f"--out={out}"]
    if count is not None:
      cmd += [f"--coordinator_address=127.0.0.1:{port}",
              f"--num_processes={count}", f"--process_id={process}"]
    with open(self.stdout, "w") as o, open(self.stderr, "w") as e:
      self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=o, stderr=e)

  def wait(self) -> int:
    return self.proc.wait(timeout=TIMEOUT)

  def out(self) -> str:
    return self.stdout.read_text(encoding="utf-8")

  def err(self) -> str:
    return self.stderr.read_text(encoding="utf-8")


def start_pair(env, inp, out, logs):
  port = free_port()
  return [Script(env, inp, out, logs, process=p, count=2, port=port)
          for p in range(2)]


@pytest.fixture(scope="module")
def reference(env, tmp_path_factory):
  """The folder, and a single-process run of it."""
  root = tmp_path_factory.mktemp("dist")
  inp, ref = root / "in", root / "ref"
  names = sorted(write_images(inp, [32] * NUM_IMAGES))  # The runner's order.
  run = Script(env, inp, ref, root)
  assert run.wait() == 0, run.err()
  return inp, ref, names


def journal_files(out):
  """{journal name: [file of each record]} over every results*.jsonl."""
  return {p.name: [r["file"] for r in read_records_at(p)]
          for p in sorted(out.glob("results*.jsonl"))}


def read_records_at(path):
  lines = path.read_bytes().split(b"\n")
  return [json.loads(line) for line in lines[:-1]]  # complete lines only


def assert_same_outputs(out, ref, names):
  """Image by image: the maps bit for bit, the panels pixel for pixel, and
  the records' prediction and SSIM figures."""
  records = {}
  for path in out.glob("results*.jsonl"):
    for rec in read_records_at(path):
      assert rec["file"] not in records, f"{rec['file']} recorded twice"
      records[rec["file"]] = rec
  want = {r["file"]: r for r in read_records(ref)}
  assert sorted(records) == sorted(names)
  for name in names:
    with np.load(out / f"{name}.npz") as got, np.load(ref / f"{name}.npz") as exp:
      assert sorted(got.files) == sorted(exp.files)
      for key in exp.files:
        np.testing.assert_array_equal(got[key], exp[key], err_msg=f"{name} {key}")
    with Image.open(out / f"{name}.png") as a, Image.open(ref / f"{name}.png") as b:
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=name)
    assert records[name]["status"] == "ok"
    assert records[name]["prediction"] == want[name]["prediction"]
    assert records[name]["ssim"] == want[name]["ssim"]


def test_two_processes_share_the_work(env, reference, tmp_path):
  inp, ref, names = reference
  out = tmp_path / "out"
  pair = start_pair(env, inp, out, tmp_path)
  for p in pair:
    assert p.wait() == 0, p.err()
  # Each process explained its half (every second file), and only that.
  assert journal_files(out) == {"results.0.jsonl": names[0::2],
                                "results.1.jsonl": names[1::2]}
  assert "explain [process 1/2]: 6/6 images" in pair[1].err()
  # One summary line for the whole run, from process 0.
  assert (f"done {NUM_IMAGES}, failed 0 (0 skipped as already recorded)"
          in pair[0].out()) and "on 2 processes" in pair[0].out()
  assert "done" not in pair[1].out()
  summary = json.loads((out / "run.json").read_text())["summary"]
  assert (summary["done"], summary["failed"], summary["processes"]) == (
      NUM_IMAGES, 0, 2)
  page = (out / "index.html").read_text(encoding="utf-8")
  assert page.count('<article class="card"') == NUM_IMAGES
  assert_same_outputs(out, ref, names)


def test_killed_process_then_one_process_finishes(env, reference, tmp_path):
  """Process 1 is SIGKILLed after its first record; process 0 finishes its
  share and then fails at the final barrier, where it is killed too (as a
  cluster's launcher ends a job whose task died). One process finishes the
  rest, and only the rest."""
  inp, ref, names = reference
  out = tmp_path / "out"
  p0, p1 = start_pair(env, inp, out, tmp_path)
  log1, log0 = out / "results.1.jsonl", out / "results.0.jsonl"
  deadline = time.monotonic() + TIMEOUT
  while not (log1.exists() and log1.read_bytes().count(b"\n") >= 1):
    assert p1.proc.poll() is None, p1.err()
    assert time.monotonic() < deadline
    time.sleep(0.005)
  p1.proc.send_signal(signal.SIGKILL)
  p1.wait()
  while (p0.proc.poll() is None and time.monotonic() < deadline
         and not (log0.exists() and log0.read_bytes().count(b"\n") >= 6)):
    time.sleep(0.05)
  p0.proc.send_signal(signal.SIGKILL)
  p0.wait()
  before = journal_files(out)
  done = [f for files in before.values() for f in files]
  assert len(set(done)) == len(done)
  assert 1 <= len(before["results.1.jsonl"]) < 6, "the kill came too late"
  assert set(before["results.1.jsonl"]) <= set(names[1::2])
  assert set(before.get("results.0.jsonl", [])) <= set(names[0::2])
  stamps = {n: os.stat(out / f"{n}.npz").st_mtime_ns for n in done}

  rerun = Script(env, inp, out, tmp_path)
  assert rerun.wait() == 0, rerun.err()
  assert (f"done {NUM_IMAGES}, failed 0 ({len(done)} skipped as already "
          "recorded)") in rerun.out()
  assert f"explain: {NUM_IMAGES - len(done)}/{NUM_IMAGES - len(done)} images" \
      in rerun.err()
  # The re-run folded both journals into its own; what was done before was
  # not written again.
  assert sorted(journal_files(out)) == ["results.jsonl"]
  assert sorted(p.name for p in out.glob("failures*.jsonl")) == ["failures.jsonl"]
  assert {n: os.stat(out / f"{n}.npz").st_mtime_ns for n in done} == stamps
  assert not list(out.rglob("*.tmp"))
  assert_same_outputs(out, ref, names)
