"""`sr_jax.runner.progress`: tqdm on a terminal, whole lines in a log."""

import io as pyio
import re
from unittest import mock

import pytest
import tqdm

from sr_jax.runner.progress import progress


class Terminal(pyio.StringIO):
  def isatty(self):
    return True


def test_log_gets_whole_lines_at_most_one_per_interval():
  log = pyio.StringIO()
  clock = iter(range(0, 1000, 3))  # Each call: 3 "seconds" later.
  with mock.patch("tqdm.std.time", side_effect=lambda: next(clock)):
    bar = progress(total=6, desc="explain", unit="images", stream=log,
                   interval=5, postfix="0 failed")
    for i in range(6):
      if i == 3:
        bar.set_postfix_str("1 failed", refresh=False)
      bar.update()
    bar.close()
  text = log.getvalue()
  assert "\r" not in text and text.endswith("\n")
  lines = text.splitlines()
  assert lines[0].startswith("explain: 0/6 images, 0 failed, ? images/s")
  assert re.fullmatch(r"explain: 6/6 images, 1 failed, \d+\.\d\d images/s, "
                      r"ETA 00:00", lines[-1]), lines[-1]
  # 6 updates 3 s apart, a line only when 5 s have passed since the last.
  assert 2 < len(lines) < 7
  assert len(set(lines)) == len(lines)  # The final count is not repeated.


def test_every_update_with_no_interval_and_iteration():
  log = pyio.StringIO()
  assert list(progress(range(4), desc="fit", unit="steps", stream=log,
                       interval=0)) == [0, 1, 2, 3]
  counts = [l.split(" ")[1] for l in log.getvalue().splitlines()]
  assert counts == ["0/4", "1/4", "2/4", "3/4", "4/4"]


def test_terminal_gets_a_tqdm_bar():
  term = Terminal()
  with progress(total=2, desc="explain", unit="images", stream=term) as bar:
    assert type(bar) is tqdm.tqdm
    bar.update(2)
  assert "\r" in term.getvalue()
  assert re.search(r"explain: 100%\|#+\| 2/2 images", term.getvalue())


def test_disable_and_bad_interval():
  log = pyio.StringIO()
  for _ in progress(range(3), stream=log, disable=True):
    pass
  assert log.getvalue() == ""
  with pytest.raises(ValueError, match=r"`interval` \(=-1\) must be >= 0"):
    progress(range(3), interval=-1)
