"""PyTorch state dicts to our Flax variables and weight files.

Three source layouts convert (`convert_state_dict`):

* `torchvision`: `features.0.weight`, ..., `classifier.6.bias`; ResNets'
  `layer1.0.conv1.weight` is `params/layer1_0/conv1/kernel`.
* `timm` (`vgg*.tv_in1k`): `features.*` as torchvision; the classifier is
  `pre_logits.fc1` (a 7x7 conv), `pre_logits.fc2` (a 1x1 conv) and `head.fc`.
  A 7x7 conv over the 7x7 feature map is torchvision's first dense layer, so
  the conversion is exact at 224x224 input.
* `vgg_face_dag` (Parkhi et al. 2015, as converted by S. Albanie's
  pytorch-mcn): `conv1_1` ... `conv5_3`, `fc6`, `fc7`, `fc8`.

`.pth` sources need torch and are read with `torch.load(weights_only=True)`;
nothing is ever unpickled beyond tensors.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any, Mapping, Optional

import numpy as np

from sr_jax import archs
from sr_jax.weights.format import (PathLike, check_exists, check_tensors,
                                   expected_shapes, read, save, sha256, sniff,
                                   unflatten)

LAYOUTS = ("torchvision", "timm", "vgg_face_dag")
# vgg_face_dag's torch names in order, and the torchvision VGG-16 indices.
_FACE_CONVS = ("conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1",
               "conv3_2", "conv3_3", "conv4_1", "conv4_2", "conv4_3",
               "conv5_1", "conv5_2", "conv5_3")
_FACE_INDEX = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
_FACE_NAMES = {**{c: f"features.{i}" for c, i in zip(_FACE_CONVS, _FACE_INDEX)},
               "fc6": "classifier.0", "fc7": "classifier.3",
               "fc8": "classifier.6"}
_TIMM_NAMES = {"pre_logits.fc1": "classifier.0",
               "pre_logits.fc2": "classifier.3", "head.fc": "classifier.6"}
_BN = {"weight": ("params", "scale"), "bias": ("params", "bias"),
       "running_mean": ("batch_stats", "mean"),
       "running_var": ("batch_stats", "var")}


def detect_layout(keys) -> str:
  """Guesses the source layout of a state dict from its key names.

  Examples:
    >>> detect_layout(["head.fc.weight", "features.0.weight"])
    'timm'
  """
  keys = set(keys)
  if any(k.startswith("pre_logits.") or k.startswith("head.") for k in keys):
    return "timm"
  if "conv1_1.weight" in keys:
    return "vgg_face_dag"
  return "torchvision"


def _check_layout(layout: str) -> None:
  if layout not in LAYOUTS:
    raise ValueError(f"`layout` (={layout!r}) must be one of {LAYOUTS}.")


def convert_state_dict(state_dict: Mapping[str, Any], arch: str, *,
                       layout: str = "torchvision") -> dict[str, Any]:
  """Converts a PyTorch state dict to Flax variables for `arch`.

  Pure NumPy: conv kernels OIHW -> HWIO, dense weights transposed, BatchNorm
  `weight/bias/running_mean/running_var` -> `params` scale/bias and
  `batch_stats` mean/var (`num_batches_tracked` is dropped). Floating tensors
  become float32.

  Args:
    state_dict: tensor name -> array (NumPy, or anything `np.asarray` takes;
      for a torch module, `{k: v.numpy() for k, v in m.state_dict().items()}`).
    arch: target architecture, e.g. "vgg16".
    layout: "torchvision", "timm" or "vgg_face_dag" (see the module doc).

  Returns:
    `{"params": ..., "batch_stats": ...}` (no `batch_stats` without BN),
    validated against `arch`.

  Raises:
    ValueError: for an unknown `layout` or `arch`, a non-float tensor, or
      tensors that do not fit `arch`.

  Examples:
    The tiny test VGG in torchvision's layout (weight shapes OIHW / out x in):

    >>> shapes = {"features.0": (8, 3, 3, 3), "features.3": (16, 8, 3, 3),
    ...           "features.6": (16, 16, 3, 3), "classifier.0": (32, 64),
    ...           "classifier.3": (32, 32), "classifier.6": (10, 32)}
    >>> state_dict = {}
    >>> for name, shape in shapes.items():
    ...   state_dict[f"{name}.weight"] = np.ones(shape, np.float32)
    ...   state_dict[f"{name}.bias"] = np.zeros(shape[0], np.float32)
    >>> variables = convert_state_dict(state_dict, "vgg_tiny")
    >>> variables["params"]["features_3"]["kernel"].shape  # HWIO
    (3, 3, 8, 16)
    >>> variables["params"]["classifier_6"]["kernel"].shape  # in x out
    (32, 10)
  """
  _check_layout(layout)
  expected = expected_shapes(arch)
  # `features.0` -> `features_0`; a ResNet nests its blocks (`layer1.0.conv1`
  # -> `layer1_0/conv1`): the spec's `torch_path` says.
  torch_path = archs.get_arch(arch).torch_path
  renames = {"timm": _TIMM_NAMES, "vgg_face_dag": _FACE_NAMES}.get(layout, {})
  flat: dict[str, np.ndarray] = {}
  for key, value in state_dict.items():
    module, _, param = key.rpartition(".")
    if param == "num_batches_tracked":
      continue
    module = torch_path(renames.get(module, module))
    a = np.asarray(value)
    if not np.issubdtype(a.dtype, np.floating):
      raise ValueError(
          f"State dict tensor `{key}` has dtype {a.dtype}; expected floats.")
    a = a.astype(np.float32, copy=False)
    if f"batch_stats/{module}/mean" in expected:
      collection, name = _BN.get(param, ("params", param))
    else:
      collection, name = "params", {"weight": "kernel"}.get(param, param)
    target = f"{collection}/{module}/{name}"
    if name == "kernel" and a.ndim == 4 and len(expected.get(target, ())) == 2:
      a = a.reshape(a.shape[0], -1)  # a timm conv standing in for a dense layer
    if name == "kernel":
      a = a.transpose(2, 3, 1, 0) if a.ndim == 4 else a.T
    out = target if target in expected else key  # unknown: reported as extra
    if out in flat:
      raise ValueError(f"State dict maps two tensors onto `{out}`.")
    flat[out] = np.ascontiguousarray(a)
  check_tensors(flat, arch, source=f"the {layout} state dict")
  return unflatten(flat)


def _read_source(src: PathLike) -> tuple[dict[str, np.ndarray], str]:
  """Tensors of a PyTorch or safetensors state dict file, and its sha256.

  What torch.save wrote (recognised by its first bytes, whatever the name) is
  read by torch; a `.safetensors` file by safetensors; anything else is
  handed to torch.
  """
  check_exists(src)
  digest = sha256(src)
  if str(src).endswith(".safetensors") and sniff(src) is None:
    return read(src)[0], digest
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise ImportError(
        f"Reading `src` (={str(src)!r}) needs torch: `pip install "
        "'sr_jax[torch]'`, or give a .safetensors state dict.") from None
  try:
    # A file object, not a name: torch.load would hand a `.safetensors`
    # name to safetensors whatever the file holds.
    with open(src, "rb") as f:
      obj = torch.load(f, map_location="cpu", weights_only=True)
  except Exception as err:  # pylint: disable=broad-except
    raise ValueError(
        f"`src` (={str(src)!r}) is not a readable PyTorch state dict "
        f"(truncated, corrupt, or holding pickled objects beyond tensors, "
        f"which weights_only=True refuses): {type(err).__name__}: "
        f"{str(err).splitlines()[0] if str(err) else ''}") from None
  if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
    obj = obj["state_dict"]
  if not isinstance(obj, Mapping) or not all(
      isinstance(v, torch.Tensor) for v in obj.values()):
    raise ValueError(f"`src` (={str(src)!r}) does not hold a state dict "
                     f"(name -> tensor), but a {type(obj).__name__}.")
  return {k: (v.float() if v.is_floating_point() else v).numpy()
          for k, v in obj.items()}, digest


def convert_file(src: PathLike, dst: PathLike, *, arch: str,
                 layout: Optional[str] = None) -> pathlib.Path:
  """Converts a PyTorch weight file into our safetensors format.

  Args:
    src: a `.pth` (needs torch; read with `weights_only=True`) or a
      `.safetensors` state dict.
    dst: destination `.safetensors` file (written atomically).
    arch: target architecture, e.g. "vgg16".
    layout: "torchvision", "timm" or "vgg_face_dag"; None guesses it from the
      tensor names.

  Returns:
    The path written.

  Raises:
    FileNotFoundError: if `src` is not a file.
    ValueError: for an unknown `arch`, an unreadable `src`, or tensors that
      do not fit `arch`.

  Examples:
    >>> convert_file("vgg16-397923af.pth", "weights/vgg16.safetensors",
    ...              arch="vgg16")  # doctest: +SKIP
  """
  archs.get_arch(arch)
  if layout is not None:
    _check_layout(layout)
  state_dict, digest = _read_source(src)
  state_dict = {k.removeprefix("module."): v for k, v in state_dict.items()}
  layout = layout or detect_layout(state_dict)
  variables = convert_state_dict(state_dict, arch, layout=layout)
  return save(dst, variables, arch=arch, metadata={
      "source_layout": layout, "source_sha256": digest,
      "source_file": os.path.basename(os.fspath(src))})
