"""Class names, so that a prediction prints as `282 tiger cat`."""

from __future__ import annotations

import functools
from importlib import resources
from typing import Optional, Sequence

from sr_jax import _deprecation


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


def label(index: int, class_names: Optional[Sequence[str]] = None, *,
          names: Optional[Sequence[str]] = None) -> str:
  """`"282 tiger cat"` for index 282 with ImageNet names; `"282"` without.

  `names=` is the deprecated old keyword of `class_names`.
  """
  class_names = _deprecation.renamed_keyword(
      class_names, names, old="names", new="class_names",
      where="sr_jax.classes.label")
  index = int(index)
  if class_names is not None and 0 <= index < len(class_names):
    return f"{index} {class_names[index]}"
  return str(index)
