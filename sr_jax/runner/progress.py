"""Progress of long runs: a tqdm bar on a terminal, plain log lines elsewhere.

One helper, `progress`, for every long loop of the project (the batch
runner, evaluation, feature fitting, class models). On a terminal it is an
ordinary `tqdm.tqdm` bar. When the stream is a file or a pipe (a log, a
SLURM output file, a CI job), a bar redrawn with carriage returns would
leave one unreadable line; there the same tqdm object writes complete lines
instead, at most one per `interval` seconds, plus the final count. tqdm
still does the counting, the smoothed rate and the ETA; only its `display`
is replaced, which tqdm documents as the place to override when inheriting.
"""

from __future__ import annotations

import re
import sys
from typing import Any, Iterable, Optional, TextIO

import tqdm

# Rates are always "<n> <unit>/s" (tqdm's `rate_noinv_fmt`); tqdm's default
# turns a slow one into "<s>s/<unit>". `unit` comes with its leading space.
# On a terminal, tqdm's bar; `l_bar` is "<desc>: <percent>|".
BAR_FORMAT = ("{l_bar}{bar}| {n_fmt}/{total_fmt}{unit} "
              "[{elapsed}<{remaining}, {rate_noinv_fmt}{postfix}]")
# In a log file: "explain: 3/10 images, 1.52 images/s, ETA 00:04" (`desc`
# comes with its ": ").
LINE_FORMAT = ("{desc}{n_fmt}/{total_fmt}{unit}{postfix}, {rate_noinv_fmt}, "
               "ETA {remaining}")


class _Lines(tqdm.tqdm):
  """tqdm that writes whole lines (for a stream that is not a terminal)."""

  _shown_n: Optional[float] = None

  def display(self, msg: Optional[str] = None, pos: Optional[int] = None) -> bool:
    del pos
    if msg is not None:  # A request to clear or overwrite: nothing to undo.
      return False
    self.fp.write(re.sub(" {2,}", " ", self.__str__()) + "\n")  # tqdm pads.
    self.fp.flush()
    self._shown_n = self.n
    return True

  def close(self) -> None:
    if not self.disable and self._shown_n != self.n:
      self.display()  # The final count, always.
    self.leave = False  # tqdm's own closing redraw would repeat it.
    super().close()


def is_terminal(stream: Any) -> bool:
  """Whether `stream` is an interactive terminal."""
  isatty = getattr(stream, "isatty", None)
  try:
    return bool(isatty and isatty())
  except ValueError:  # A closed file.
    return False


def progress(
    iterable: Optional[Iterable[Any]] = None,
    *,
    total: Optional[float] = None,
    desc: Optional[str] = None,
    unit: str = "it",
    stream: Optional[TextIO] = None,
    postfix: Optional[str] = None,
    interval: float = 1.0,
    disable: bool = False,
) -> tqdm.tqdm:
  """A progress bar over `iterable` (or updated by hand) on `stream`.

  Args:
    iterable: what to iterate over; None for a bar driven by `.update(n)`.
    total: the expected count (None: `len(iterable)` when it has one).
    desc: a prefix such as "explain".
    unit: what is counted, e.g. "images".
    stream: where it goes (None: `sys.stderr`, looked up at call time).
    postfix: text after the count, e.g. "0 failed" (`set_postfix_str`
      changes it).
    interval: the fewest seconds between two lines (or redraws).
    disable: show nothing at all.

  Returns:
    A `tqdm.tqdm`: iterate over it, or call `update`, `set_postfix_str` and
    `close` (it is also a context manager). On a terminal it is tqdm's own
    bar; otherwise it writes lines such as
    "explain: 3/10 images, 1.52 images/s, ETA 00:04".

  Raises:
    ValueError: if `interval` is negative.

  Examples:
    >>> import io
    >>> log = io.StringIO()
    >>> for _ in progress(range(3), desc="fit", unit="steps", stream=log):
    ...   pass
    >>> log.getvalue().splitlines()[-1].startswith("fit: 3/3 steps")
    True
  """
  if not interval >= 0:
    raise ValueError(f"`interval` (={interval!r}) must be >= 0 seconds.")
  stream = sys.stderr if stream is None else stream
  unit_text = f" {unit}" if unit else ""
  options = dict(total=total, unit=unit_text, file=stream, postfix=postfix,
                 mininterval=interval, disable=disable)
  if is_terminal(stream):
    return tqdm.tqdm(iterable, desc=desc, bar_format=BAR_FORMAT,
                     dynamic_ncols=True, **options)
  # `maxinterval` is tqdm's forced redraw of a stalled bar: not for a log.
  return _Lines(iterable, desc=f"{desc}: " if desc else None,
                bar_format=LINE_FORMAT, maxinterval=float("inf"), **options)
