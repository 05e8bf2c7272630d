"""VGG (Simonyan & Zisserman 2015) as in torchvision, and VGG-Face.

Submodules are named after torchvision's `nn.Sequential` indices
(`features_0`, `classifier_6`, ...), so a torchvision state dict maps onto the
parameters by name alone (see `sr_jax.weights`). Input is NHWC.
"""

from __future__ import annotations

import functools
from typing import Sequence, Union

import flax.linen as nn
import jax

from sr_jax.models.layers import (AdaptiveAvgPool2d, MaxPool2d, check_nhwc,
                                  conv, dense, flatten_nchw)

# torchvision's configurations: an int is a 3x3 conv with that many channels,
# "M" a 2x2 max-pool with stride 2.
CFGS: dict[str, tuple[Union[int, str], ...]] = {
    "A": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "B": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512,
          "M"),
    "D": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
          512, 512, 512, "M"),
    "E": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512,
          512, "M", 512, 512, 512, 512, "M"),
    # Used for testing only: a VGG of the same layer types at toy width.
    "tiny": (8, "M", 16, "M", 16, "M"),
}


class VGG(nn.Module):
  """A VGG network with torchvision's module layout.

  Attributes:
    cfg: layer configuration (see `CFGS`).
    num_classes: number of output logits.
    batch_norm: insert BatchNorm after every conv (the `_bn` variants); it
      always uses running statistics.
    hidden: width of the two hidden dense layers.
    pool_size: output size of the adaptive average pool.
  """

  cfg: Sequence[Union[int, str]]
  num_classes: int = 1000
  batch_norm: bool = False
  hidden: int = 4096
  pool_size: tuple[int, int] = (7, 7)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """Logits for an NHWC batch. `train=True` enables dropout (needs a key)."""
    check_nhwc(x, 3, 2 ** sum(v == "M" for v in self.cfg), type(self).__name__)
    i = 0
    for v in self.cfg:
      if v == "M":
        x = MaxPool2d((2, 2), (2, 2), name=f"features_{i}")(x)
        i += 1
        continue
      x = conv(v, 3, padding=1, name=f"features_{i}")(x)
      i += 1
      if self.batch_norm:
        x = nn.BatchNorm(use_running_average=True, momentum=0.9, epsilon=1e-5,
                         name=f"features_{i}")(x)
        i += 1
      x = nn.relu(x)
      i += 1
    x = AdaptiveAvgPool2d(self.pool_size, name="avgpool")(x)
    x = flatten_nchw(x)
    x = nn.relu(dense(self.hidden, name="classifier_0")(x))
    x = nn.Dropout(0.5, deterministic=not train)(x)
    x = nn.relu(dense(self.hidden, name="classifier_3")(x))
    x = nn.Dropout(0.5, deterministic=not train)(x)
    return dense(self.num_classes, name="classifier_6")(x)


vgg11 = functools.partial(VGG, cfg=CFGS["A"])
vgg13 = functools.partial(VGG, cfg=CFGS["B"])
vgg16 = functools.partial(VGG, cfg=CFGS["D"])
vgg19 = functools.partial(VGG, cfg=CFGS["E"])
vgg11_bn = functools.partial(VGG, cfg=CFGS["A"], batch_norm=True)
vgg13_bn = functools.partial(VGG, cfg=CFGS["B"], batch_norm=True)
vgg16_bn = functools.partial(VGG, cfg=CFGS["D"], batch_norm=True)
vgg19_bn = functools.partial(VGG, cfg=CFGS["E"], batch_norm=True)
# VGG-Face (Parkhi, Vedaldi, Zisserman 2015): VGG-16 with 2622 identities.
vgg_face = functools.partial(VGG, cfg=CFGS["D"], num_classes=2622)
# Used for testing only.
vgg_tiny = functools.partial(VGG, cfg=CFGS["tiny"], num_classes=10, hidden=32,
                             pool_size=(2, 2))
