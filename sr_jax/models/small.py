"""`demo_vgg`: a small VGG that we train ourselves on the synthetic flowers.

The same layer types as VGG (3x3 convs with ReLU, 2x2 max-pooling, an
adaptive average pool and dense layers), with the same torchvision-style
module names (`features_i`, `avgpool`, `classifier_i`), so every LRP rule and
composite, `sr_jax.weights.save` and `load` apply unchanged. It is `VGG` at a
small width: four conv blocks of 16 to 64 channels (six convs), a global
average pool and a 128-unit classifier; 160k parameters, a 0.64 MB weight
file. `demo_vgg_tiny` (32x32 input, 31k parameters) is for fast tests only.

Its input is a 64x64 image of `sr_jax.data.synthetic`, scaled to [0, 1] and
normalized with the training images' per-channel mean and std. It is trained
by `sr_jax.train` (`python -m sr_jax.scripts.train_demo`), and the bundled
weights are `weights/demo_vgg.safetensors`, whose metadata holds the class
names.
"""

from __future__ import annotations

import functools

from sr_jax.data import synthetic
from sr_jax.models.registry import ArchSpec, Preprocessing, register
from sr_jax.models.resnet import BasicBlock, ResNet
from sr_jax.models.vgg import VGG

# An int is a 3x3 conv with that many channels, "M" a 2x2 max-pool.
DEMO_CFG = (16, "M", 32, "M", 64, 64, "M", 64, 64, "M")
INPUT_SIZE = synthetic.DEFAULT_SIZE
# Per-channel mean and std of the training images (`TRAIN_SEED`, the first
# 4000), in [0, 1] units.
DEMO_MEAN = (0.488, 0.487, 0.485)
DEMO_STD = (0.160, 0.160, 0.161)
DEMO_PREPROCESSING = Preprocessing(resize=None, crop=None, scale=1.0 / 255.0,
                                   mean=DEMO_MEAN, std=DEMO_STD)

demo_vgg = functools.partial(VGG, cfg=DEMO_CFG,
                             num_classes=len(synthetic.CLASS_NAMES),
                             hidden=128, pool_size=(1, 1))
DemoVGG = demo_vgg

register(ArchSpec("demo_vgg", demo_vgg, len(synthetic.CLASS_NAMES),
                  DEMO_PREPROCESSING, input_size=INPUT_SIZE,
                  class_names="metadata"))

# Used for testing only: the same design at toy width, on 32x32 images.
demo_vgg_tiny = functools.partial(VGG, cfg=(8, "M", 16, "M", 32, "M", 32, "M",
                                            32, "M"),
                                  num_classes=len(synthetic.CLASS_NAMES),
                                  hidden=64, pool_size=(1, 1))
register(ArchSpec("demo_vgg_tiny", demo_vgg_tiny, len(synthetic.CLASS_NAMES),
                  DEMO_PREPROCESSING, input_size=32, class_names="metadata"))

# The second demo architecture: a small ResNet (four BasicBlocks of 16 to 128
# channels, no BatchNorm, a 3x3 stem and a 2x2 max-pool; 0.31M parameters),
# trained exactly as `demo_vgg` (`weights/demo_resnet.safetensors`).
demo_resnet = functools.partial(ResNet, stage_sizes=(1, 1, 1, 1),
                                block=BasicBlock,
                                num_classes=len(synthetic.CLASS_NAMES),
                                width=16, norm=False, stem="small")
register(ArchSpec("demo_resnet", demo_resnet, len(synthetic.CLASS_NAMES),
                  DEMO_PREPROCESSING, input_size=INPUT_SIZE,
                  class_names="metadata"))
