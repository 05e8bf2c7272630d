"""Flax ports of the classifiers the library explains.

(`sr_jax.models.allocator`, the malloc settings, is now `sr_jax.runtime`;
the old name is a deprecated alias.)
"""

from sr_jax.models.alexnet import AlexNet, alexnet
from sr_jax.models.layers import AdaptiveAvgPool2d, MaxPool2d
from sr_jax.models.preprocess import normalize, preprocess
from sr_jax.models.registry import (ARCHS, ArchSpec, Preprocessing, get_arch,
                                    register)
from sr_jax.models.resnet import ResNet, resnet18, resnet50
from sr_jax.models import small  # registers `demo_vgg`
from sr_jax.models.loading import load_model, resolve_weights
from sr_jax.models.vgg import (VGG, vgg11, vgg11_bn, vgg13, vgg13_bn, vgg16,
                               vgg16_bn, vgg19, vgg19_bn, vgg_face, vgg_tiny)

__all__ = [
    "ARCHS", "AdaptiveAvgPool2d", "AlexNet", "ArchSpec", "MaxPool2d",
    "Preprocessing", "VGG", "alexnet", "get_arch", "load_model", "normalize",
    "preprocess", "register", "small", "vgg11", "vgg11_bn", "vgg13",
    "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn", "vgg_face",
    "vgg_tiny",
    "ResNet", "resnet18", "resnet50", "resolve_weights",
]


def __getattr__(name: str):
  if name == "allocator":  # deprecated: warns on import
    import sr_jax.models.allocator  # pylint: disable=import-outside-toplevel
    return sr_jax.models.allocator
  raise AttributeError(f"module 'sr_jax.models' has no attribute {name!r}")
