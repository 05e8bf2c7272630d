"""ResNet-18 and ResNet-50 (He et al. 2016) as in torchvision.

Submodules are named after torchvision's modules, with a `.` between a stage
and its block index written as `_` (as VGG's `features_0` is torchvision's
`features.0`) and a block's own modules nested under it: torchvision's
`layer1.0.conv1` is `layer1_0/conv1`, `layer2.0.downsample.1` is
`layer2_0/downsample_1`; the stem is `conv1`, `bn1`, `maxpool` and the head
`fc`. `torchvision_path` maps one name onto the other, so a torchvision state
dict converts by name (see `sr_jax.weights`). Input is NHWC.

The bottleneck is torchvision's "ResNet v1.5": a stage's stride sits on the
3x3 conv, not on the first 1x1 conv. BatchNorm always uses its running
statistics (inference). The global average pool is a plain `x.mean((1, 2))`,
which the explanation core sees as a parameter-free linear layer.
"""

from __future__ import annotations

import functools
from typing import ClassVar, Sequence

import flax.linen as nn
import jax

from sr_jax.models.layers import (MaxPool2d, check_nhwc, dense,
                                  lecun_normal_flat)


def _conv(features: int, kernel: int, stride: int, padding: int,
          name: str) -> nn.Conv:
  """A bias-free conv with torch's symmetric padding (torchvision's convs)."""
  return nn.Conv(features, (kernel, kernel), strides=(stride, stride),
                 padding=((padding, padding), (padding, padding)),
                 use_bias=False, kernel_init=lecun_normal_flat, name=name)


def _bn(name: str) -> nn.BatchNorm:
  """`torch.nn.BatchNorm2d` in eval mode (eps 1e-5, running statistics)."""
  return nn.BatchNorm(use_running_average=True, momentum=0.9, epsilon=1e-5,
                      name=name)


def _shortcut(x: jax.Array, features: int, stride: int,
              downsample: bool) -> jax.Array:
  """The identity, or torchvision's `downsample`: a strided 1x1 conv and BN."""
  if not downsample:
    return x
  return _bn("downsample_1")(_conv(features, 1, stride, 0, "downsample_0")(x))


class _Block(nn.Module):
  """What both residual blocks are configured by.

  Attributes:
    planes: channels of the inner convs; the block outputs
      `expansion * planes`.
    stride: stride of the block's strided conv (and of the downsample).
    downsample: project the shortcut with a 1x1 conv and BN.
  """

  expansion: ClassVar[int] = 1
  planes: int
  stride: int = 1
  downsample: bool = False


class BasicBlock(_Block):
  """torchvision's `BasicBlock`: two 3x3 convs (the first strided) and a
  residual sum."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    y = nn.relu(_bn("bn1")(_conv(self.planes, 3, self.stride, 1, "conv1")(x)))
    y = _bn("bn2")(_conv(self.planes, 3, 1, 1, "conv2")(y))
    y = y + _shortcut(x, self.planes, self.stride, self.downsample)
    return nn.relu(y)


class Bottleneck(_Block):
  """torchvision's `Bottleneck` (v1.5): 1x1, strided 3x3, 1x1 (x4) convs and
  a residual sum."""

  expansion: ClassVar[int] = 4

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    out = self.planes * self.expansion
    y = nn.relu(_bn("bn1")(_conv(self.planes, 1, 1, 0, "conv1")(x)))
    y = nn.relu(_bn("bn2")(_conv(self.planes, 3, self.stride, 1, "conv2")(y)))
    y = _bn("bn3")(_conv(out, 1, 1, 0, "conv3")(y))
    y = y + _shortcut(x, out, self.stride, self.downsample)
    return nn.relu(y)


class ResNet(nn.Module):
  """A ResNet with torchvision's module layout.

  Attributes:
    stage_sizes: blocks per stage (`layer1` ... `layer4`).
    block: `BasicBlock` or `Bottleneck`.
    num_classes: number of output logits.
  """

  stage_sizes: Sequence[int]
  block: type[nn.Module]
  num_classes: int = 1000

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Logits (N, num_classes) for an NHWC batch (N, H, W, 3) of any size."""
    check_nhwc(x, 3, 1, type(self).__name__)
    x = nn.relu(_bn("bn1")(_conv(64, 7, 2, 3, "conv1")(x)))
    x = MaxPool2d((3, 3), (2, 2), padding=1, name="maxpool")(x)
    channels = 64
    for stage, blocks in enumerate(self.stage_sizes):
      planes = 64 * 2 ** stage
      for i in range(blocks):
        stride = 2 if stage > 0 and i == 0 else 1
        downsample = i == 0 and (stride != 1 or
                                 channels != planes * self.block.expansion)
        x = self.block(planes, stride=stride, downsample=downsample,
                       name=f"layer{stage + 1}_{i}")(x)
        channels = planes * self.block.expansion
    x = x.mean((1, 2))
    return dense(self.num_classes, name="fc")(x)


def torchvision_path(module: str) -> str:
  """Our module path for a torchvision ResNet module name.

  Args:
    module: a state-dict key without its last part, e.g. "layer1.0.conv1".

  Returns:
    The Flax path: "layer1.0.conv1" -> "layer1_0/conv1",
    "layer2.0.downsample.0" -> "layer2_0/downsample_0"; stem and head names
    ("conv1", "bn1", "fc") are unchanged.

  Examples:
    >>> torchvision_path("layer3.1.bn2")
    'layer3_1/bn2'
  """
  parts = module.split(".")
  if len(parts) > 2 and parts[0].startswith("layer") and parts[1].isdigit():
    return f"{parts[0]}_{parts[1]}/" + "_".join(parts[2:])
  return "_".join(parts)


resnet18 = functools.partial(ResNet, stage_sizes=(2, 2, 2, 2),
                             block=BasicBlock)
resnet50 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3),
                             block=Bottleneck)
