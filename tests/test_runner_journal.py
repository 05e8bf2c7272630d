"""The journals of `sr_jax.runner` across runs with different process counts,
checked in one process: journals of earlier multi-process runs (and of old
single-process runs) are read, merged and folded into one, and only what
none of them records is explained again. The multi-process runs themselves
are in test_runner_distributed.py."""

import fcntl
import functools
import io as pyio
import json

import pytest

from sr_jax import runner
from sr_jax.runner import hosts, journal
from tests.test_batch import check_complete, fake_explain, write_images

run_one = functools.partial(runner.run, model="vgg_tiny", batch_size=2,
                            num_devices=1, stream=pyio.StringIO())


def counting(calls):
  def explain(crops, timings):
    calls.append(len(crops))
    return fake_explain(crops, timings)
  return explain


def lines_by_file(path):
  return {json.loads(l)["file"]: l for l in path.read_bytes().splitlines(True)}


def test_names_and_locks(tmp_path):
  assert journal.journal_names(0, 1) == ("results.jsonl", "failures.jsonl")
  assert journal.journal_names(3, 4) == ("results.3.jsonl", "failures.3.jsonl")
  assert [journal.lock_name(p) for p in (0, 1, 2)] == [".lock", ".lock.1",
                                                      ".lock.2"]
  for name in ("results.jsonl", "results.10.jsonl", "results.2.jsonl",
               "results.x.jsonl", "failures.1.jsonl"):
    (tmp_path / name).write_text("")
  assert [p.name for p in journal.journal_paths(tmp_path)] == [
      "results.jsonl", "results.2.jsonl", "results.10.jsonl"]
  # Each process has its own lock; a second holder of one is refused.
  with journal.exclusive(tmp_path, process=0), \
       journal.exclusive(tmp_path, process=1):
    with open(tmp_path / ".lock.1", "w", encoding="utf-8") as f:
      with pytest.raises(BlockingIOError):
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    with pytest.raises(RuntimeError, match=r"in use by another run.*\.lock\.1"):
      with journal.exclusive(tmp_path, process=1):
        pass


def test_share_is_disjoint_and_complete():
  items = list(range(11))
  shares = [runner.share(items, process=p, count=3) for p in range(3)]
  assert sorted(sum(shares, [])) == items
  assert shares[1] == [1, 4, 7, 10]
  with pytest.raises(ValueError, match=r"`process` \(=3\) must be in 0\.\.2"):
    runner.share(items, process=3, count=3)


def test_rerun_reads_the_journals_of_every_process(tmp_path):
  """The folder a killed 2-process run leaves, resumed by one process."""
  inp, out = tmp_path / "in", tmp_path / "out"
  good = write_images(inp, [16] * 7)
  run_one(str(inp), str(out), explain_fn=fake_explain)
  by_file = lines_by_file(out / "results.jsonl")
  names = sorted(by_file)
  # Process 0 committed its share but img4.png; process 1 two images and
  # half a line; both left their failure views.
  (out / "results.jsonl").unlink()
  (out / "failures.jsonl").unlink()
  (out / "results.0.jsonl").write_bytes(
      b"".join(by_file[n] for n in names[0::2] if n != "img4.png"))
  (out / "results.1.jsonl").write_bytes(
      b"".join(by_file[n] for n in names[1:4:2]) + by_file[names[5]][:20])
  (out / "failures.0.jsonl").write_text("")
  (out / "failures.1.jsonl").write_text("")
  calls = []
  summary = run_one(str(inp), str(out), explain_fn=counting(calls))
  assert sum(calls) == 2 and len(calls) == 1  # img4.png and names[5], padded.
  assert (summary.done, summary.skipped) == (7, 5)
  assert [p.name for p in journal.journal_paths(out)] == ["results.jsonl"]
  assert not (out / "failures.0.jsonl").exists()
  assert not (out / "failures.1.jsonl").exists()
  check_complete(inp, out, good)


def test_ok_in_any_journal_wins_over_failed(tmp_path):
  inp, out = tmp_path / "in", tmp_path / "out"
  good = write_images(inp, [16] * 2)
  run_one(str(inp), str(out), explain_fn=fake_explain)
  ok = lines_by_file(out / "results.jsonl")
  failed = json.dumps({"file": "img0.png", "status": "failed", "stage": "load",
                       "reason": "an earlier failure"}) + "\n"
  (out / "results.jsonl").write_bytes(failed.encode() + ok["img1.png"])
  (out / "results.3.jsonl").write_bytes(ok["img0.png"])
  calls = []
  summary = run_one(str(inp), str(out), explain_fn=counting(calls))
  assert not calls and (summary.done, summary.failed) == (2, 0)
  check_complete(inp, out, good)
  # Without an "ok" anywhere the failure stands, until retried.
  (out / "results.jsonl").write_bytes(failed.encode() + ok["img1.png"])
  summary = run_one(str(inp), str(out), explain_fn=counting(calls))
  assert not calls and summary.failed == 1
  assert "an earlier failure" in (out / "failures.jsonl").read_text()
  summary = run_one(str(inp), str(out), explain_fn=counting(calls),
                    retry_failed=True)
  assert calls == [2] and summary.failed == 0
  check_complete(inp, out, good)


def test_old_outputs_resume(tmp_path):
  """A folder from before multi-host runs: no thumbnails, no summary."""
  inp, out = tmp_path / "in", tmp_path / "out"
  good = write_images(inp, [16] * 3)
  run_one(str(inp), str(out), explain_fn=fake_explain)
  recs = [json.loads(l) for l in (out / "results.jsonl").read_text().splitlines()]
  for rec in recs:
    (out / rec.pop("thumbnail")).unlink()
  (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
  config = json.loads((out / "run.json").read_text())
  del config["summary"]
  (out / "run.json").write_text(json.dumps(config))
  (out / "index.html").unlink()
  before = (out / "results.jsonl").read_bytes()
  calls = []
  summary = run_one(str(inp), str(out), explain_fn=counting(calls))
  assert not calls and (summary.done, summary.skipped) == (3, 3)
  assert (out / "results.jsonl").read_bytes() == before
  page = (out / "index.html").read_text(encoding="utf-8")
  assert all(f'src="{n}.png"' in page for n in good)  # The PNG instead.
  check_complete(inp, out, good)


def test_reader_follows_complete_lines(tmp_path):
  reader = journal.Reader(tmp_path)
  assert reader.poll() == {}
  a = {"file": "a", "status": "failed", "reason": "x"}
  b = {"file": "b", "status": "ok"}
  line_b = (json.dumps(b) + "\n").encode()
  (tmp_path / "results.1.jsonl").write_bytes(
      (json.dumps(a) + "\n").encode() + line_b[:7])
  assert reader.poll() == {"a": a}
  with open(tmp_path / "results.1.jsonl", "ab") as f:
    f.write(line_b[7:])
  (tmp_path / "results.jsonl").write_text(
      json.dumps({"file": "a", "status": "ok"}) + "\n")
  assert reader.poll() == {"a": {"file": "a", "status": "ok"}, "b": b}


def test_hosts_without_distributed():
  assert hosts.initialize() is False
  assert hosts.process() == (0, 1)
  hosts.barrier("nothing to wait for")
  hosts.check_same_inputs(["a"])
  with pytest.raises(ValueError, match=r"`num_processes` \(=0\) must be >= 1"):
    hosts.initialize(num_processes=0)
  with pytest.raises(ValueError, match=r"`process_id` \(=2\) must be in 0\.\.1"):
    hosts.initialize(num_processes=2, process_id=2)
