"""Old names kept for one release: each use warns with a DeprecationWarning.

`alias` keeps a renamed function callable under its old name;
`renamed_keyword` accepts a keyword argument under its old name. (Renamed
modules, such as `sr_jax.io` and `sr_jax.batch`, warn on import instead.)
"""

from __future__ import annotations

import functools
import warnings
from typing import Any, Callable, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def warn(old: str, new: str, *, stacklevel: int = 3) -> None:
  """A DeprecationWarning: "`old` is deprecated; use `new`."

  The default `stacklevel` names the caller of the function that calls
  `warn`.
  """
  warnings.warn(f"{old} is deprecated; use {new}.", DeprecationWarning,
                stacklevel=stacklevel)


def alias(function: F, old: str) -> F:
  """`function` under its old name `old` (e.g. "sr_jax.sr.normalise").

  The alias calls `function` with the same arguments, after a
  DeprecationWarning that names both. Its `__name__` is the old name.
  """
  new = f"{function.__module__}.{function.__qualname__}"

  @functools.wraps(function)
  def deprecated(*args, **kwargs):
    warn(f"`{old}`", f"`{new}`")
    return function(*args, **kwargs)

  deprecated.__name__ = deprecated.__qualname__ = old.rpartition(".")[2]
  deprecated.__doc__ = f"Deprecated alias of `{new}`."
  return deprecated  # type: ignore[return-value]


def renamed_keyword(value: Any, old_value: Any, *, old: str, new: str,
                    where: str) -> Any:
  """`value`, or else `old_value`, given under the deprecated keyword `old`.

  Args:
    value: the argument under its new keyword `new` (None: not given).
    old_value: the argument under its old keyword `old` (None: not given).
    old: the old keyword.
    new: the new keyword.
    where: the function, for the messages (e.g. "sr_jax.viz.panel").

  Returns:
    `value` when `old_value` is None; else `old_value`, after a
    DeprecationWarning that names the caller of `where`.

  Raises:
    ValueError: if both are given.
  """
  if old_value is None:
    return value
  if value is not None:
    raise ValueError(f"Pass the argument once, as `{new}=`; `{old}=` of "
                     f"{where} is its deprecated old name.")
  warn(f"`{old}=` of {where}", f"`{new}=`", stacklevel=4)
  return old_value
