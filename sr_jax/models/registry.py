"""Registry of architectures and `load_model`, the one entry point to a model.

Each architecture is an `ArchSpec`: how to build the Flax module, how many
classes it has, and how its input is preprocessed. `load_model` builds the
module and either initialises it from a PRNG key or loads a weight file
through `sr_jax.weights`, which validates every tensor.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Callable, Optional, Union

import flax.linen as nn
import jax
import jax.numpy as jnp

from sr_jax.models.alexnet import AlexNet
from sr_jax.models import vgg as _vgg

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Mean pixel of the VGG-Face training set in 0..255 RGB (vgg_face_dag meta).
VGG_FACE_MEAN = (129.186279296875, 104.76238250732422, 93.59396362304688)


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


@dataclasses.dataclass(frozen=True)
class ArchSpec:
  """What the library knows about one architecture."""

  name: str
  build: Callable[..., nn.Module]
  num_classes: int
  preprocessing: Preprocessing = Preprocessing()
  input_size: int = 224
  class_names: str = "imagenet"  # "imagenet", "none", or "metadata"

  def module(self, num_classes: Optional[int] = None) -> nn.Module:
    return self.build(num_classes=num_classes or self.num_classes)


ARCHS: dict[str, ArchSpec] = {}


def register(spec: ArchSpec) -> ArchSpec:
  """Adds `spec` to the registry (an existing name is replaced)."""
  ARCHS[spec.name] = spec
  return spec


for _name in ("vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn",
              "vgg16_bn", "vgg19_bn"):
  register(ArchSpec(_name, getattr(_vgg, _name), 1000))
register(ArchSpec("alexnet", AlexNet, 1000))
register(ArchSpec("vgg_face", _vgg.vgg_face, 2622,
                  Preprocessing(scale=1.0, mean=VGG_FACE_MEAN,
                                std=(1.0, 1.0, 1.0)), class_names="none"))
# Used for testing only.
register(ArchSpec("vgg_tiny", _vgg.vgg_tiny, 10,
                  Preprocessing(resize=None, crop=None), input_size=32,
                  class_names="none"))


def get_arch(name: str) -> ArchSpec:
  """The `ArchSpec` called `name`; a ValueError lists the known names."""
  if not isinstance(name, str) or name not in ARCHS:
    raise ValueError(
        f"Unknown architecture `arch` (={name!r}); known architectures: "
        f"{', '.join(sorted(ARCHS))}.")
  return ARCHS[name]


def init_params(model: nn.Module, key: jax.Array, input_size: int) -> Any:
  """Random parameters (and batch statistics) for `model`, jitted."""
  x = jnp.zeros((1, input_size, input_size, 3), jnp.float32)
  return jax.jit(model.init)(key, x)


@functools.lru_cache(maxsize=64)
def _cached_init(spec: ArchSpec) -> Callable[[jax.Array, jax.Array], Any]:
  """One jitted `init` per architecture, so repeated loads compile once."""
  return jax.jit(spec.module().init)


def load_model(
    name: str,
    weights: Union[str, os.PathLike, None] = None,
    *,
    key: Optional[jax.Array] = None,
) -> tuple[nn.Module, Any]:
  """Builds architecture `name` and returns `(model, variables)`.

  Args:
    name: an architecture in `ARCHS` (e.g. "vgg16", "alexnet", "vgg_face").
    weights: a safetensors file written by `sr_jax.weights` (validated tensor
      by tensor against the architecture), or None. With None, an
      architecture that ships weights with the project (`demo_vgg`, see
      `sr_jax.weights.bundled_path`) loads them unless `key` is given;
      otherwise the parameters are randomly initialised from `key`.
    key: PRNG key for random initialisation; defaults to `PRNGKey(0)`.

  Returns:
    The Flax module and its variables, ready for `model.apply(variables, x)`.

  Examples:
    >>> model, params = load_model("vgg_tiny", key=jax.random.PRNGKey(1))
    >>> model.apply(params, jnp.zeros((1, 32, 32, 3))).shape
    (1, 10)
  """
  spec = get_arch(name)
  from sr_jax import weights as weights_lib  # pylint: disable=import-outside-toplevel
  if weights is None and key is None:
    bundled = weights_lib.bundled_path(name)
    if bundled is not None:
      return weights_lib.load(bundled, arch=name)
  if weights is None:
    key = jax.random.PRNGKey(0) if key is None else key
    x = jnp.zeros((1, spec.input_size, spec.input_size, 3), jnp.float32)
    return spec.module(), _cached_init(spec)(key, x)
  return weights_lib.load(weights, arch=name)
