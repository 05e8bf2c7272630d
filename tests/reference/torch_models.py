"""Reference architectures in plain `torch.nn`, with torchvision's module indices.

torchvision itself does not import beside the CPU torch we test with, so these
are written out from its definitions; their state-dict keys are exactly
torchvision's (`features.0.weight`, `classifier.6.bias`, ResNet's
`layer1.0.downsample.1.running_mean`, ...). Also here: the timm
`vgg*.tv_in1k` layout (classifier as a 7x7 conv and a 1x1 conv, then a global
pool and a linear head) and the `vgg_face_dag` layout.
"""

from __future__ import annotations

import torch
from torch import nn

CFGS = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512,
          "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
          512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512,
          512, "M", 512, 512, 512, 512, "M"],
    "tiny": [8, "M", 16, "M", 16, "M"],
}
ARCH_CFG = {"vgg11": ("A", False), "vgg13": ("B", False),
            "vgg16": ("D", False), "vgg19": ("E", False),
            "vgg11_bn": ("A", True), "vgg13_bn": ("B", True),
            "vgg16_bn": ("D", True), "vgg19_bn": ("E", True),
            "vgg_face": ("D", False), "vgg_tiny": ("tiny", False)}


def make_features(cfg, batch_norm: bool) -> nn.Sequential:
  layers, c = [], 3
  for v in cfg:
    if v == "M":
      layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    else:
      layers.append(nn.Conv2d(c, v, kernel_size=3, padding=1))
      if batch_norm:
        layers.append(nn.BatchNorm2d(v))
      layers.append(nn.ReLU(inplace=False))
      c = v
  return nn.Sequential(*layers)


class VGG(nn.Module):
  """torchvision.models.VGG."""

  def __init__(self, cfg, batch_norm=False, num_classes=1000, hidden=4096,
               pool=7):
    super().__init__()
    self.features = make_features(cfg, batch_norm)
    last = [v for v in cfg if v != "M"][-1]
    self.avgpool = nn.AdaptiveAvgPool2d((pool, pool))
    self.classifier = nn.Sequential(
        nn.Linear(last * pool * pool, hidden), nn.ReLU(False), nn.Dropout(),
        nn.Linear(hidden, hidden), nn.ReLU(False), nn.Dropout(),
        nn.Linear(hidden, num_classes))

  def forward(self, x):
    x = self.avgpool(self.features(x))
    return self.classifier(torch.flatten(x, 1))


class AlexNet(nn.Module):
  """torchvision.models.AlexNet."""

  def __init__(self, num_classes=1000):
    super().__init__()
    self.features = nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(False),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(False),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(False),
        nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(False),
        nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(False),
        nn.MaxPool2d(kernel_size=3, stride=2))
    self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
    self.classifier = nn.Sequential(
        nn.Dropout(), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(False),
        nn.Dropout(), nn.Linear(4096, 4096), nn.ReLU(False),
        nn.Linear(4096, num_classes))

  def forward(self, x):
    x = self.avgpool(self.features(x))
    return self.classifier(torch.flatten(x, 1))


class _ConvMlp(nn.Module):
  def __init__(self, cin, hidden):
    super().__init__()
    self.fc1 = nn.Conv2d(cin, hidden, 7)
    self.act1 = nn.ReLU(False)
    self.drop = nn.Dropout()
    self.fc2 = nn.Conv2d(hidden, hidden, 1)
    self.act2 = nn.ReLU(False)

  def forward(self, x):
    return self.act2(self.fc2(self.drop(self.act1(self.fc1(x)))))


class _Head(nn.Module):
  def __init__(self, hidden, num_classes):
    super().__init__()
    self.fc = nn.Linear(hidden, num_classes)

  def forward(self, x):
    return self.fc(x.mean((2, 3)))


class TimmVGG(nn.Module):
  """timm's VGG (`vgg16.tv_in1k` etc.): `pre_logits` ConvMlp, `head.fc`.

  At 224x224 the 7x7 conv sees exactly the 7x7 feature map, so it equals
  torchvision's first dense layer.
  """

  def __init__(self, cfg, batch_norm=False, num_classes=1000, hidden=4096):
    super().__init__()
    self.features = make_features(cfg, batch_norm)
    self.pre_logits = _ConvMlp([v for v in cfg if v != "M"][-1], hidden)
    self.head = _Head(hidden, num_classes)

  def forward(self, x):
    return self.head(self.pre_logits(self.features(x)))


class VGGFaceDag(nn.Module):
  """The `vgg_face_dag` layout: conv1_1 ... conv5_3, fc6, fc7, fc8."""

  BLOCKS = ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512))

  def __init__(self, num_classes=2622):
    super().__init__()
    c = 3
    self.names = []
    for b, n, width in self.BLOCKS:
      for i in range(1, n + 1):
        name = f"conv{b}_{i}"
        setattr(self, name, nn.Conv2d(c, width, 3, padding=1))
        self.names.append(name)
        c = width
      self.names.append("pool")
    self.fc6 = nn.Linear(512 * 7 * 7, 4096)
    self.fc7 = nn.Linear(4096, 4096)
    self.fc8 = nn.Linear(4096, num_classes)

  def forward(self, x):
    for name in self.names:
      if name == "pool":
        x = nn.functional.max_pool2d(x, 2, 2)
      else:
        x = torch.relu(getattr(self, name)(x))
    x = torch.flatten(x, 1)
    x = torch.relu(self.fc6(x))
    x = torch.relu(self.fc7(x))
    return self.fc8(x)


def _conv_bn(cin, cout, kernel, stride=1, padding=0):
  return (nn.Conv2d(cin, cout, kernel, stride, padding, bias=False),
          nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
  """torchvision.models.resnet.BasicBlock."""

  expansion = 1

  def __init__(self, inplanes, planes, stride=1, downsample=None):
    super().__init__()
    self.conv1, self.bn1 = _conv_bn(inplanes, planes, 3, stride, 1)
    self.relu = nn.ReLU(inplace=False)
    self.conv2, self.bn2 = _conv_bn(planes, planes, 3, 1, 1)
    self.downsample = downsample

  def forward(self, x):
    identity = x if self.downsample is None else self.downsample(x)
    out = self.relu(self.bn1(self.conv1(x)))
    return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
  """torchvision.models.resnet.Bottleneck (v1.5: the stride on the 3x3)."""

  expansion = 4

  def __init__(self, inplanes, planes, stride=1, downsample=None):
    super().__init__()
    self.conv1, self.bn1 = _conv_bn(inplanes, planes, 1)
    self.conv2, self.bn2 = _conv_bn(planes, planes, 3, stride, 1)
    self.conv3, self.bn3 = _conv_bn(planes, planes * 4, 1)
    self.relu = nn.ReLU(inplace=False)
    self.downsample = downsample

  def forward(self, x):
    identity = x if self.downsample is None else self.downsample(x)
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.relu(self.bn2(self.conv2(out)))
    return self.relu(self.bn3(self.conv3(out)) + identity)


RESNET_LAYERS = {"resnet18": (BasicBlock, (2, 2, 2, 2)),
                 "resnet50": (Bottleneck, (3, 4, 6, 3))}


class ResNet(nn.Module):
  """torchvision.models.ResNet (groups 1, width 64)."""

  def __init__(self, block, layers, num_classes=1000):
    super().__init__()
    self.inplanes = 64
    self.conv1, self.bn1 = _conv_bn(3, 64, 7, 2, 3)
    self.relu = nn.ReLU(inplace=False)
    self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
    self.layer1 = self._make_layer(block, 64, layers[0])
    self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
    self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
    self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
    self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
    self.fc = nn.Linear(512 * block.expansion, num_classes)

  def _make_layer(self, block, planes, blocks, stride=1):
    downsample = None
    if stride != 1 or self.inplanes != planes * block.expansion:
      downsample = nn.Sequential(*_conv_bn(self.inplanes,
                                           planes * block.expansion, 1, stride))
    layers = [block(self.inplanes, planes, stride, downsample)]
    self.inplanes = planes * block.expansion
    layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)

  def forward(self, x):
    x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
    x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
    return self.fc(torch.flatten(self.avgpool(x), 1))


def build(arch: str, seed: int = 0, layout: str = "torchvision") -> nn.Module:
  """A randomly initialised reference model in eval mode.

  BatchNorm running statistics are randomised too, so that the tests see them
  used (fresh ones are the identity).
  """
  torch.manual_seed(seed)
  if layout == "vgg_face_dag":
    model = VGGFaceDag()
  elif arch == "alexnet":
    model = AlexNet()
  elif arch in RESNET_LAYERS:
    model = ResNet(*RESNET_LAYERS[arch])
  else:
    cfg, bn = ARCH_CFG[arch]
    num_classes = {"vgg_face": 2622, "vgg_tiny": 10}.get(arch, 1000)
    if layout == "timm":
      model = TimmVGG(CFGS[cfg], bn, num_classes)
    elif arch == "vgg_tiny":
      model = VGG(CFGS[cfg], bn, num_classes, hidden=32, pool=2)
    else:
      model = VGG(CFGS[cfg], bn, num_classes)
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, nn.BatchNorm2d):
        m.running_mean.uniform_(-0.5, 0.5)
        m.running_var.uniform_(0.5, 2.0)
        m.weight.uniform_(0.5, 1.5)
        m.bias.uniform_(-0.2, 0.2)
  return model.eval()
