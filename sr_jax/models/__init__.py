"""Flax ports of the classifiers the library explains.

Importing this package first applies `allocator.tune_from_env()` (glibc keeps
freed memory for reuse; see allocator.py), before JAX starts any thread.
"""

from sr_jax.models import allocator
allocator.tune_from_env()

# pylint: disable=wrong-import-position
from sr_jax.models.alexnet import AlexNet, alexnet
from sr_jax.models.layers import AdaptiveAvgPool2d, MaxPool2d
from sr_jax.models.preprocess import preprocess
from sr_jax.models.registry import (ARCHS, ArchSpec, Preprocessing, get_arch,
                                    register)
from sr_jax.models.resnet import ResNet, resnet18, resnet50
from sr_jax.models import small  # registers `demo_vgg`
from sr_jax.models.loading import load_model, resolve_weights
from sr_jax.models.vgg import (VGG, vgg11, vgg11_bn, vgg13, vgg13_bn, vgg16,
                               vgg16_bn, vgg19, vgg19_bn, vgg_face, vgg_tiny)

__all__ = [
    "ARCHS", "AdaptiveAvgPool2d", "AlexNet", "ArchSpec", "MaxPool2d",
    "Preprocessing", "VGG", "allocator", "alexnet", "get_arch", "load_model", "preprocess",
    "register", "small", "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn",
    "vgg19", "vgg19_bn", "vgg_face", "vgg_tiny",
    "ResNet", "resnet18", "resnet50", "resolve_weights",
]
