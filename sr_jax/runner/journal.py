"""The results journals of a batch run: crash-safe commit logs, one per process.

A journal is a JSON-lines file with one record per input image, `"status":
"ok"` or `"failed"` (with the reason). A record is appended with a single
`write` and `fsync`ed *after* the image's files were written (to a temporary
name, then renamed into place by `sr_jax.files`), so it is the one proof that an
image is done: a run killed at any moment leaves committed images complete
and anything else uncommitted.

File names. A single-process run writes `results.jsonl`, with the derived view
`failures.jsonl` (its failed records), as before multi-host runs existed.
Process p of a run of n > 1 processes (`jax.distributed`) writes
`results.<p>.jsonl` and `failures.<p>.jsonl` into the same, shared folder.
Every one of these files is a journal; an image is done if any of them
records it (an "ok" record, whose `.npz` and `.png` exist, wins over a
"failed" one).

Locks. Process 0 holds `.lock`, which makes one run at a time per folder;
process p > 0 holds `.lock.<p>`, so no two processes ever append to one
journal. The OS releases them when a process dies, even by SIGKILL.

Recovery (`consolidate`, process 0 only, while the other processes wait at a
barrier and nobody writes):

1. deletes temporary files a killed writer left behind;
2. reads every journal, drops a partial last line (a kill mid-write), any
   unreadable line, any repeated record of a file, any "ok" record whose
   `.npz` or `.png` has gone, and (with `retry_failed`) every "failed" one;
3. folds what is left into process 0's own journal (written atomically),
   then deletes the other journals and their failure views, and rebuilds its
   failure view. A kill between these steps leaves records twice, which the
   next recovery drops again.

So after a run with 2 processes, a re-run with 1 (or 3) reads both journals,
finishes exactly what is missing, and leaves one journal per process again.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from pathlib import Path
from typing import Iterator, Optional, Sequence

from sr_jax import files

RESULTS, FAILURES, CONFIG, LOCK = ("results.jsonl", "failures.jsonl",
                                   "run.json", ".lock")
_JOURNAL = re.compile(r"results(?:\.(\d+))?\.jsonl")
_VIEW = re.compile(r"failures(?:\.\d+)?\.jsonl")
_FAILURE_KEYS = ("file", "stage", "reason")


def journal_names(process: int, count: int) -> tuple[str, str]:
  """(journal, failure view) file names of process `process` of `count`."""
  if count == 1:
    return RESULTS, FAILURES
  return f"results.{process}.jsonl", f"failures.{process}.jsonl"


def lock_name(process: int) -> str:
  """`.lock` for process 0 (the run's lock), `.lock.<p>` for the others."""
  return LOCK if process == 0 else f"{LOCK}.{process}"


def journal_paths(out: Path) -> list[Path]:
  """Every journal in `out`: `results.jsonl` first, then by process."""
  found = []
  for p in out.iterdir() if out.is_dir() else ():
    m = _JOURNAL.fullmatch(p.name)
    if m and p.is_file():
      found.append((-1 if m.group(1) is None else int(m.group(1)), p))
  return [p for _, p in sorted(found)]


def _parse_lines(data: bytes) -> tuple[list[tuple[bytes, dict]], bool]:
  """The complete, readable records of a journal's bytes, with their lines.

  Returns:
    (line, record) pairs in order, and whether anything was dropped (a
    partial last line, or a line that is not a record).
  """
  lines = data.split(b"\n")
  kept, dirty = [], bool(lines[-1])  # No final newline: partial last line.
  for line in lines[:-1]:
    try:
      rec = json.loads(line)
      if not (isinstance(rec["file"], str) and isinstance(rec["status"], str)):
        raise TypeError
    except (ValueError, KeyError, TypeError):
      dirty = True
      continue
    kept.append((line + b"\n", rec))
  return kept, dirty


def _outputs_exist(out: Path, name: str) -> bool:
  """Whether `<name>.npz` and `<name>.png` are in `out`."""
  return all((out / f"{name}{ext}").is_file() for ext in (".npz", ".png"))


def _failure_line(rec: dict) -> str:
  """The line of a failed record in a failure view."""
  return json.dumps({k: rec.get(k) for k in _FAILURE_KEYS}) + "\n"


def _better(new: dict, old: Optional[dict]) -> bool:
  """Whether record `new` replaces `old` for its file: "ok" beats "failed",
  otherwise the first record seen stays."""
  return old is None or (old["status"] != "ok" and new["status"] == "ok")


def consolidate(out: Path, *, process: int, count: int,
                retry_failed: bool) -> dict[str, dict]:
  """Recovery (see the module docstring); returns the records, by file.

  Only process 0 calls it, when no other process writes to `out`.
  """
  for dirpath, _, _ in os.walk(out):
    files.remove_temp_files(dirpath)
  own, view = (out / name for name in journal_names(process, count))
  others = [p for p in journal_paths(out) if p != own]
  records: dict[str, dict] = {}
  lines: dict[str, bytes] = {}
  dirty = bool(others)
  for path in [own, *others]:
    data = path.read_bytes() if path.exists() else b""
    kept, dropped = _parse_lines(data)
    dirty |= dropped
    for line, rec in kept:
      key, ok = rec["file"], rec["status"] == "ok"
      if ((ok and not _outputs_exist(out, key)) or (retry_failed and not ok)
          or not _better(rec, records.get(key))):
        dirty = True
        continue
      dirty |= key in records  # An "ok" replacing a "failed".
      records[key], lines[key] = rec, line
  if dirty:
    files.atomic_write(own, b"".join(lines.values()))
  stale = [p for p in out.iterdir() if _VIEW.fullmatch(p.name) and p != view]
  for path in others + stale:
    with contextlib.suppress(FileNotFoundError):
      os.unlink(path)
  failed = [_failure_line(r) for r in records.values() if r["status"] != "ok"]
  files.atomic_write(view, "".join(failed).encode())
  return records


class Reader:
  """Follows every journal of `out` as they grow, and merges their records.

  Each `poll` reads only the bytes appended since the last one (complete
  lines only), so following a long run costs what it appends.
  """

  def __init__(self, out: Path):
    self.out = Path(out)
    self.records: dict[str, dict] = {}
    self._offsets: dict[Path, int] = {}

  def poll(self) -> dict[str, dict]:
    """Reads what was appended; returns all records so far, by file."""
    for path in journal_paths(self.out):
      start = self._offsets.get(path, 0)
      try:
        with open(path, "rb") as f:
          f.seek(start)
          data = f.read()
      except FileNotFoundError:
        continue
      end = data.rfind(b"\n") + 1
      self._offsets[path] = start + end
      for _, rec in _parse_lines(data[:end])[0]:
        if _better(rec, self.records.get(rec["file"])):
          self.records[rec["file"]] = rec
    return self.records


class Writer:
  """Appends one process's records to its journal and its failure view."""

  def __init__(self, out: Path, *, process: int, count: int):
    results, failures = journal_names(process, count)
    self.path, self.failures = Path(out) / results, Path(out) / failures
    self._fd: Optional[int] = None

  def open(self) -> "Writer":
    """Opens the journal for appending (creating it and the failure view)."""
    if not self.failures.exists():
      files.atomic_write(self.failures, b"")
    self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    return self

  def commit(self, rec: dict) -> None:
    """Appends `rec` durably; it is the image's record from now on."""
    line = memoryview((json.dumps(rec) + "\n").encode())
    while line:
      line = line[os.write(self._fd, line):]
    os.fsync(self._fd)
    if rec["status"] != "ok":
      with open(self.failures, "a", encoding="utf-8") as f:
        f.write(_failure_line(rec))

  def close(self) -> None:
    if self._fd is not None:
      os.close(self._fd)
      self._fd = None

  def __enter__(self) -> "Writer":
    return self.open()

  def __exit__(self, *exc) -> None:
    self.close()


@contextlib.contextmanager
def exclusive(out: Path, *, process: int = 0) -> Iterator[None]:
  """Holds this process's lock on `out` (released by the OS if killed).

  Raises:
    RuntimeError: if another run (or process) holds it.
  """
  with open(Path(out) / lock_name(process), "w", encoding="utf-8") as lock:
    try:
      fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      raise RuntimeError(
          f"`out` (={str(out)!r}) is in use by another run (its "
          f"{lock_name(process)} is locked).") from None
    yield


def records_of(records: dict[str, dict], names: Sequence[str]) -> list[dict]:
  """The records of `names` that exist, in the order of `names`."""
  return [records[n] for n in names if n in records]
