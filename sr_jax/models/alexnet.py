"""AlexNet (Krizhevsky et al. 2012) in torchvision's one-GPU variant.

Submodules carry torchvision's `nn.Sequential` indices as names
(`features_0`, ..., `classifier_6`); input is NHWC.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from sr_jax.models.layers import (AdaptiveAvgPool2d, MaxPool2d, check_nhwc,
                                  conv, dense, flatten_nchw)


class AlexNet(nn.Module):
  """torchvision's AlexNet.

  Attributes:
    num_classes: number of output logits.
  """

  num_classes: int = 1000

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """Logits for an NHWC batch. `train=True` enables dropout (needs a key)."""
    check_nhwc(x, 3, 63, "AlexNet")
    x = nn.relu(conv(64, 11, stride=4, padding=2, name="features_0")(x))
    x = MaxPool2d((3, 3), (2, 2), name="features_2")(x)
    x = nn.relu(conv(192, 5, padding=2, name="features_3")(x))
    x = MaxPool2d((3, 3), (2, 2), name="features_5")(x)
    x = nn.relu(conv(384, 3, padding=1, name="features_6")(x))
    x = nn.relu(conv(256, 3, padding=1, name="features_8")(x))
    x = nn.relu(conv(256, 3, padding=1, name="features_10")(x))
    x = MaxPool2d((3, 3), (2, 2), name="features_12")(x)
    x = AdaptiveAvgPool2d((6, 6), name="avgpool")(x)
    x = flatten_nchw(x)
    x = nn.Dropout(0.5, deterministic=not train)(x)
    x = nn.relu(dense(4096, name="classifier_1")(x))
    x = nn.Dropout(0.5, deterministic=not train)(x)
    x = nn.relu(dense(4096, name="classifier_4")(x))
    return dense(self.num_classes, name="classifier_6")(x)


alexnet = AlexNet
