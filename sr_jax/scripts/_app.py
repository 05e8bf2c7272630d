"""What every app shares: quiet logs, and errors as one line with exit 2.

Each script is flags and one library call (as in the flax examples); its
`main` is `_app.run(fn)`, where `fn(argv)` calls the library and returns the
exit status. `run`

* keeps JAX's backend messages (e.g. "Unable to initialize backend 'tpu'",
  logged at INFO by `jax._src.xla_bridge` while it looks for accelerators)
  out of the output unless `--verbosity` is given (`--verbosity=0`, absl's
  INFO, brings them back), so a script prints only its results, the files
  it wrote and its errors;
* refuses positional arguments (`app.UsageError`: the scripts take flags);
* turns a `ValueError` (bad values: flags, files, architectures), an
  `OSError` (missing or unwritable files, downloads) or an `ImportError` (a
  missing optional dependency) into `error: <message>` on one line of stderr
  and exit status 2. `app.UsageError` stays absl's usage message, exit 1.
"""

from __future__ import annotations

import logging
import sys
from typing import Callable, Optional, Sequence

from absl import app, flags

FLAGS = flags.FLAGS
USER_ERRORS = (ValueError, OSError, ImportError)
QUIET_LOGGERS = ("jax",)  # Their INFO lines are for developers.


def one_line(error: BaseException) -> str:
  """`error`'s message on one line (its lines joined by spaces).

  Examples:
    >>> one_line(ValueError("bad\\n  value"))
    'bad value'
  """
  text = " ".join(part.strip() for part in str(error).splitlines()
                  if part.strip())
  return text or type(error).__name__


def quiet_backend_logs() -> None:
  """Raises JAX's loggers to WARNING unless `--verbosity` was given."""
  if "verbosity" in FLAGS and FLAGS["verbosity"].present:
    return
  for name in QUIET_LOGGERS:
    logging.getLogger(name).setLevel(logging.WARNING)


def call(fn: Callable[[Sequence[str]], Optional[int]],
         argv: Sequence[str]) -> int:
  """Runs `fn(argv)` with quiet logs; a user error becomes exit status 2.

  The scripts take flags only: positional arguments are a usage error.
  """
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {list(argv[1:])}")
  quiet_backend_logs()
  try:
    status = fn(argv)
  except USER_ERRORS as e:
    print(f"error: {one_line(e)}", file=sys.stderr)
    return 2
  return 0 if status is None else int(status)


def run(fn: Callable[[Sequence[str]], Optional[int]]) -> None:
  """`absl.app.run` of `fn` through `call`; exits with its status."""
  app.run(lambda argv: call(fn, argv))
