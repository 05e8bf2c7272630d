"""The table of architectures: what the library knows about each one.

An `ArchSpec` says how to build an architecture's Flax module, how many
classes it has, how its input is preprocessed and how torchvision names its
modules. This module is a leaf: it imports no model code and no weight files.
`sr_jax.models.registry` fills the table with the library's models (and is
where users `register` their own); `sr_jax.weights` reads shapes from it; and
`sr_jax.models.loading` joins the two. So the imports run one way:
models.loading -> weights -> archs <- models.registry.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional, Union

import flax.linen as nn
import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class Preprocessing:
  """How an architecture wants its pixels.

  The uint8 image is resized so its shorter side is `resize` (PIL bilinear),
  centre-cropped to `crop`, scaled by `scale`, then `(x - mean) / std` is
  applied per channel. `resize=None` skips resizing and cropping.
  """

  resize: Optional[int] = 256
  crop: Optional[int] = 224
  scale: float = 1.0 / 255.0
  mean: tuple[float, float, float] = IMAGENET_MEAN
  std: tuple[float, float, float] = IMAGENET_STD

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  def pixel_range(self) -> tuple[np.ndarray, np.ndarray]:
    """`(low, high)`: float64 arrays, one value per channel, that pixels 0
    and 255 take after `(x * scale - mean) / std`.

    Examples:
      >>> p = Preprocessing(mean=(0.5,) * 3, std=(0.5,) * 3)
      >>> [v.tolist() for v in p.pixel_range()]
      [[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]
    """
    mean = np.asarray(self.mean, np.float64)
    std = np.asarray(self.std, np.float64)
    return (0.0 * self.scale - mean) / std, (255.0 * self.scale - mean) / std


def dotted_to_underscored(module: str) -> str:
  """The default torch -> Flax module path: `features.0` -> `features_0`."""
  return module.replace(".", "_")


@dataclasses.dataclass(frozen=True)
class ArchSpec:
  """What the library knows about one architecture.

  Attributes:
    name: the architecture's name, e.g. "vgg16".
    build: `build(num_classes=...)` returns the Flax module.
    num_classes: the number of classes of its (default) head.
    preprocessing: how its input is preprocessed.
    input_size: the side of its square input in pixels.
    class_names: "imagenet", "none", or "metadata" (from the weight file).
    torch_path: our module path for a torchvision module name (a state-dict
      key without its last part), used when converting weights.
  """

  name: str
  build: Callable[..., nn.Module]
  num_classes: int
  preprocessing: Preprocessing = Preprocessing()
  input_size: int = 224
  class_names: str = "imagenet"  # "imagenet", "none", or "metadata"
  torch_path: Callable[[str], str] = dotted_to_underscored

  def module(self, num_classes: Optional[int] = None) -> nn.Module:
    return self.build(num_classes=num_classes or self.num_classes)


ARCHS: dict[str, ArchSpec] = {}


def register(spec: ArchSpec) -> ArchSpec:
  """Adds `spec` to the table (an existing name is replaced)."""
  ARCHS[spec.name] = spec
  return spec


def get_arch(name: str) -> ArchSpec:
  """The `ArchSpec` called `name`; a ValueError lists the known names."""
  if not isinstance(name, str) or name not in ARCHS:
    raise ValueError(
        f"Unknown architecture `arch` (={name!r}); known architectures: "
        f"{', '.join(sorted(ARCHS))}.")
  return ARCHS[name]


def preprocessing_of(arch: Union[str, Preprocessing]) -> Preprocessing:
  """`arch` itself when it is a `Preprocessing`, else the preprocessing of
  the architecture called `arch` (a ValueError lists the known names)."""
  if isinstance(arch, Preprocessing):
    return arch
  return get_arch(arch).preprocessing
