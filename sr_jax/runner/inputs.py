"""The input images of a batch run: finding them, sharing them, batching them."""

from __future__ import annotations

import glob
import os
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

import numpy as np

from sr_jax import files, sr

T = TypeVar("T")

# (name, crop, seconds spent loading it)
Item = tuple[str, np.ndarray, float]


def find_inputs(input: str, out: str) -> list[tuple[str, Path]]:  # pylint: disable=redefined-builtin
  """(name, path) of every input image, sorted; `out` is never an input.

  `name` is the path relative to the folder `input` names, or to the part of
  a glob before its first wildcard, in POSIX form.
  """
  text = os.fspath(input)
  if os.path.isdir(text):
    root = Path(text)
  elif glob.has_magic(text):
    parts = Path(text).parts
    first = next(i for i, p in enumerate(parts) if glob.has_magic(p))
    root = Path(*parts[:first]) if first else Path(".")
  else:
    root = Path(text).parent
  out_dir = Path(out).resolve()
  found = []
  for p in files.list_images(text):
    if out_dir == p.resolve() or out_dir in p.resolve().parents:
      continue
    found.append((p.relative_to(root).as_posix(), p))
  return found


def share(items: Sequence[T], *, process: int, count: int) -> list[T]:
  """Process `process`'s share of `items`: every `count`-th, from `process`.

  Every process computes the same split of the same sorted list, so the
  shares are disjoint and cover it, with no talk between processes.

  Examples:
    >>> share(list("abcde"), process=1, count=2)
    ['b', 'd']
  """
  if not 0 <= process < count:
    raise ValueError(f"`process` (={process}) must be in 0..{count - 1}.")
  return list(items[process::count])


def batches(todo: Iterable[tuple[str, Path]], *, arch: str, size: int,
            fail: Callable[[str, str, Exception], None]) -> Iterator[list[Item]]:
  """Groups of up to `size` (name, crop, load seconds) of one crop size.

  An image that cannot be loaded is reported to `fail(name, "load", error)`
  and left out.
  """
  pending: dict[tuple[int, ...], list[Item]] = {}
  for name, path in todo:
    t = time.perf_counter()
    try:
      crop = sr.prepare(files.load_image(path), arch=arch)
    except Exception as e:  # pylint: disable=broad-except
      fail(name, "load", e)
      continue
    group = pending.setdefault(crop.shape, [])
    group.append((name, crop, time.perf_counter() - t))
    if len(group) == size:
      yield pending.pop(crop.shape)
  yield from pending.values()
