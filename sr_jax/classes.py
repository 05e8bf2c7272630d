"""Class names, so that a prediction prints as `282 tiger cat`."""

from __future__ import annotations

import functools
from importlib import resources
from typing import Optional, Sequence


@functools.lru_cache(maxsize=None)
def imagenet_classes() -> tuple[str, ...]:
  """The 1000 ImageNet-1k class names in torchvision's index order."""
  text = resources.files("sr_jax").joinpath("imagenet_classes.txt").read_text(
      encoding="utf-8")
  names = tuple(line for line in text.splitlines() if line)
  if len(names) != 1000:
    raise RuntimeError(
        f"imagenet_classes.txt holds {len(names)} names, expected 1000; the "
        "installation is damaged.")
  return names


def label(index: int, names: Optional[Sequence[str]] = None) -> str:
  """`"282 tiger cat"` for index 282 with ImageNet names; `"282"` without."""
  index = int(index)
  if names is not None and 0 <= index < len(names):
    return f"{index} {names[index]}"
  return str(index)
