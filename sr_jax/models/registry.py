"""Registry of architectures: the library's models in the table of specs.

Each architecture is an `ArchSpec` (`sr_jax.archs`): how to build the Flax
module, how many classes it has, how its input is preprocessed and how
torchvision names its modules. This module registers the built-in ones and is
the public home of `ArchSpec`, `Preprocessing`, `register` and `get_arch`. It
imports no weight files: `sr_jax.models.loading.load_model` builds a model
with its variables.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

# The table itself lives in `sr_jax.archs` (a leaf, so that `sr_jax.weights`
# can read it without importing the models); these names are its public home.
from sr_jax.archs import (ARCHS, IMAGENET_MEAN, IMAGENET_STD,  # noqa: F401
                          ArchSpec, Preprocessing, get_arch, register)
from sr_jax.models.alexnet import AlexNet
from sr_jax.models import resnet as _resnet
from sr_jax.models import vgg as _vgg

# Mean pixel of the VGG-Face training set in 0..255 RGB (vgg_face_dag meta).
VGG_FACE_MEAN = (129.186279296875, 104.76238250732422, 93.59396362304688)


for _name in ("vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn",
              "vgg16_bn", "vgg19_bn"):
  register(ArchSpec(_name, getattr(_vgg, _name), 1000))
register(ArchSpec("alexnet", AlexNet, 1000))
register(ArchSpec("resnet18", _resnet.resnet18, 1000,
                  torch_path=_resnet.torchvision_path))
register(ArchSpec("resnet50", _resnet.resnet50, 1000,
                  torch_path=_resnet.torchvision_path))
register(ArchSpec("vgg_face", _vgg.vgg_face, 2622,
                  Preprocessing(scale=1.0, mean=VGG_FACE_MEAN,
                                std=(1.0, 1.0, 1.0)), class_names="none"))
# Used for testing only.
register(ArchSpec("vgg_tiny", _vgg.vgg_tiny, 10,
                  Preprocessing(resize=None, crop=None), input_size=32,
                  class_names="none"))


def init_params(model: nn.Module, key: jax.Array, input_size: int) -> Any:
  """Random parameters (and batch statistics) for `model`, jitted."""
  x = jnp.zeros((1, input_size, input_size, 3), jnp.float32)
  return jax.jit(model.init)(key, x)
