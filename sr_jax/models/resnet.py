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
which the explanation core sees as a parameter-free linear layer; it sits in
a parameter-free module named `avgpool`, as VGG's, so training code can
capture the pooled features by name.

`demo_resnet` (registered in `sr_jax.models.small`) is the same design at
demo size: `width=16`, one `BasicBlock` per stage, no BatchNorm
(`norm=False`: the convs carry biases) and a small-image stem (`stem="small"`:
a 3x3 stride-1 conv and a 2x2 max-pool instead of the 7x7/2 conv and the
3x3/2 max-pool).
"""

from __future__ import annotations

import functools
from typing import ClassVar, Sequence

import flax.linen as nn
import jax

from sr_jax.models.layers import (MaxPool2d, check_nhwc, dense,
                                  lecun_normal_flat)


def _conv(features: int, kernel: int, stride: int, padding: int,
          name: str, bias: bool = False) -> nn.Conv:
  """A conv with torch's symmetric padding; bias-free (torchvision's convs)
  unless `bias` (the convs of a ResNet without BatchNorm)."""
  return nn.Conv(features, (kernel, kernel), strides=(stride, stride),
                 padding=((padding, padding), (padding, padding)),
                 use_bias=bias, kernel_init=lecun_normal_flat, name=name)


def _bn(name: str, norm: bool = True):
  """`torch.nn.BatchNorm2d` in eval mode (eps 1e-5, running statistics), or
  the identity when not `norm`."""
  if not norm:
    return lambda x: x
  return nn.BatchNorm(use_running_average=True, momentum=0.9, epsilon=1e-5,
                      name=name)


def _shortcut(x: jax.Array, features: int, stride: int,
              downsample: bool, norm: bool = True) -> jax.Array:
  """The identity, or torchvision's `downsample`: a strided 1x1 conv and BN."""
  if not downsample:
    return x
  conv = _conv(features, 1, stride, 0, "downsample_0", bias=not norm)
  return _bn("downsample_1", norm)(conv(x))


class _GlobalMean(nn.Module):
  """The global average pool, `x.mean((1, 2))`, as a named module."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    return x.mean((1, 2))


class _Block(nn.Module):
  """What both residual blocks are configured by.

  Attributes:
    planes: channels of the inner convs; the block outputs
      `expansion * planes`.
    stride: stride of the block's strided conv (and of the downsample).
    downsample: project the shortcut with a 1x1 conv and BN.
    norm: BatchNorm after each conv (torchvision), or none and conv biases.
  """

  expansion: ClassVar[int] = 1
  planes: int
  stride: int = 1
  downsample: bool = False
  norm: bool = True

  @nn.nowrap
  def conv(self, features: int, kernel: int, stride: int, padding: int,
           name: str) -> nn.Conv:
    return _conv(features, kernel, stride, padding, name, bias=not self.norm)

  @nn.nowrap
  def bn(self, name: str):
    return _bn(name, self.norm)


class BasicBlock(_Block):
  """torchvision's `BasicBlock`: two 3x3 convs (the first strided) and a
  residual sum."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    y = nn.relu(self.bn("bn1")(self.conv(self.planes, 3, self.stride, 1,
                                         "conv1")(x)))
    y = self.bn("bn2")(self.conv(self.planes, 3, 1, 1, "conv2")(y))
    y = y + _shortcut(x, self.planes, self.stride, self.downsample, self.norm)
    return nn.relu(y)


class Bottleneck(_Block):
  """torchvision's `Bottleneck` (v1.5): 1x1, strided 3x3, 1x1 (x4) convs and
  a residual sum."""

  expansion: ClassVar[int] = 4

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    out = self.planes * self.expansion
    y = nn.relu(self.bn("bn1")(self.conv(self.planes, 1, 1, 0, "conv1")(x)))
    y = nn.relu(self.bn("bn2")(self.conv(self.planes, 3, self.stride, 1,
                                         "conv2")(y)))
    y = self.bn("bn3")(self.conv(out, 1, 1, 0, "conv3")(y))
    y = y + _shortcut(x, out, self.stride, self.downsample, self.norm)
    return nn.relu(y)


class ResNet(nn.Module):
  """A ResNet with torchvision's module layout.

  Attributes:
    stage_sizes: blocks per stage (`layer1` ... `layer4`).
    block: `BasicBlock` or `Bottleneck`.
    num_classes: number of output logits.
    width: channels of the stem and of `layer1` (doubled in each later
      stage); torchvision's 64.
    norm: BatchNorm after every conv (torchvision), or none, with conv
      biases instead.
    stem: "imagenet" (7x7/2 conv, 3x3/2 max-pool: torchvision) or "small"
      (3x3/1 conv, 2x2/2 max-pool: for 32-64 px images).
  """

  stage_sizes: Sequence[int]
  block: type[nn.Module]
  num_classes: int = 1000
  width: int = 64
  norm: bool = True
  stem: str = "imagenet"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Logits (N, num_classes) for an NHWC batch (N, H, W, 3) of any size."""
    check_nhwc(x, 3, 1, type(self).__name__)
    if self.stem not in ("imagenet", "small"):
      raise ValueError(f"`stem` (={self.stem!r}) must be 'imagenet' or "
                       "'small'.")
    big = self.stem == "imagenet"
    conv1 = _conv(self.width, 7 if big else 3, 2 if big else 1,
                  3 if big else 1, "conv1", bias=not self.norm)
    x = nn.relu(_bn("bn1", self.norm)(conv1(x)))
    x = (MaxPool2d((3, 3), (2, 2), padding=1, name="maxpool") if big else
         MaxPool2d((2, 2), (2, 2), name="maxpool"))(x)
    channels = self.width
    for stage, blocks in enumerate(self.stage_sizes):
      planes = self.width * 2 ** stage
      for i in range(blocks):
        stride = 2 if stage > 0 and i == 0 else 1
        downsample = i == 0 and (stride != 1 or
                                 channels != planes * self.block.expansion)
        x = self.block(planes, stride=stride, downsample=downsample,
                       norm=self.norm, name=f"layer{stage + 1}_{i}")(x)
        channels = planes * self.block.expansion
    x = _GlobalMean(name="avgpool")(x)
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
