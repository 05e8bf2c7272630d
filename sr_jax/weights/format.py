"""Our weight files: safetensors with one tensor per Flax variable.

Tensors are named by their variable's path (`params/features_0/kernel`,
`batch_stats/features_1/mean`), and the string metadata holds `arch`,
`num_classes`, `source_layout`, `source_sha256`, `preprocessing` (JSON) and
`format`. Every tensor's name, shape and dtype is checked against the
architecture on reading and writing. Nothing is ever unpickled: a file that
is a PyTorch checkpoint in disguise is recognised by its first bytes and
refused with the way to convert it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import pathlib
import re
from typing import Any, Mapping, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np
import safetensors
import safetensors.numpy

from sr_jax import files
from sr_jax import archs

PathLike = Union[str, os.PathLike]
FORMAT = "sr_jax.weights/1"
CONVERT_COMMAND = "sr-jax-convert (python -m sr_jax.scripts.convert)"
# The first bytes of what torch.save writes: a zip archive (the default since
# torch 1.6), or a bare pickle (`_use_new_zipfile_serialization=False`),
# whose first opcode is PROTO (0x80) with the protocol number, 2 to 5.
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = 0x80
_PICKLE_PROTOCOLS = range(2, 6)


def _natural(name: str) -> list[Any]:
  return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def layer_order(name: str) -> tuple[Any, ...]:
  """Sort key: params first, then features, other layers, classifier (or a
  ResNet's fc); by index."""
  collection, _, rest = name.partition("/")
  module, _, leaf = rest.rpartition("/")
  rank = {"features": 0, "classifier": 2, "fc": 2}.get(
      module.split("_")[0], 1)
  return (collection != "params", rank, _natural(module), leaf != "kernel",
          leaf)


def expected_shapes(arch: str) -> dict[str, tuple[int, ...]]:
  """Every variable of `arch` as `{"params/features_0/kernel": shape}`.

  Computed abstractly (`jax.eval_shape`), in the model's layer order.

  Examples:
    >>> expected_shapes("vgg_tiny")["params/features_0/kernel"]
    (3, 3, 3, 8)
  """
  return dict(_expected_shapes(archs.get_arch(arch)))


@functools.lru_cache(maxsize=64)
def _expected_shapes(spec: archs.ArchSpec):
  x = jax.ShapeDtypeStruct((1, spec.input_size, spec.input_size, 3),
                           np.float32)
  tree = jax.eval_shape(spec.module().init, jax.random.PRNGKey(0), x)
  flat = {k: tuple(v.shape) for k, v in flatten(tree).items()}
  return tuple(sorted(flat.items(), key=lambda kv: layer_order(kv[0])))


def flatten(variables: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  """Nested variables as `{"params/features_0/kernel": array, ...}`.

  Examples:
    >>> flatten({"params": {"fc": {"bias": 1}}})
    {'params/fc/bias': 1}
  """
  out = {}
  for k, v in variables.items():
    if isinstance(v, Mapping):
      out.update(flatten(v, f"{prefix}{k}/"))
    else:
      out[f"{prefix}{k}"] = v
  return out


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
  """The inverse of `flatten`.

  Examples:
    >>> unflatten({"params/fc/bias": 1})
    {'params': {'fc': {'bias': 1}}}
  """
  tree: dict[str, Any] = {}
  for name, v in flat.items():
    *parents, leaf = name.split("/")
    node = tree
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = v
  return tree


def check_tensors(flat: Mapping[str, Any], arch: str, *, source: str = "",
                  check_dtype: bool = True) -> None:
  """Raises a ValueError unless `flat` holds exactly the variables of `arch`.

  Args:
    flat: tensors by name (`params/features_0/kernel`, ...).
    arch: architecture name.
    source: where the tensors came from, for the message.
    check_dtype: also require float32.

  Raises:
    ValueError: naming the first missing, misshapen, mistyped or unexpected
      tensor.
  """
  expected = expected_shapes(arch)
  where = f" in {source}" if source else ""
  for name, shape in expected.items():
    if name not in flat:
      raise ValueError(
          f"Weights{where} do not fit architecture `{arch}`: tensor `{name}` "
          f"(expected shape {shape}) is missing.")
    got = tuple(np.shape(flat[name]))
    if got != shape:
      raise ValueError(
          f"Weights{where} do not fit architecture `{arch}`: tensor `{name}` "
          f"has shape {got}, expected {shape}.")
    dtype = np.dtype(flat[name].dtype)
    if check_dtype and dtype != np.float32:
      raise ValueError(
          f"Weights{where} for architecture `{arch}`: tensor `{name}` has "
          f"dtype {dtype}, expected float32.")
  extra = sorted(set(flat) - set(expected), key=layer_order)
  if extra:
    raise ValueError(
        f"Weights{where} do not fit architecture `{arch}`: unexpected tensor "
        f"`{extra[0]}` (shape {tuple(np.shape(flat[extra[0]]))})"
        f"{f' and {len(extra) - 1} more' if len(extra) > 1 else ''}.")


def save(path: PathLike, variables: Mapping[str, Any], *, arch: str,
         metadata: Optional[Mapping[str, str]] = None) -> pathlib.Path:
  """Writes `variables` of `arch` to a safetensors file, atomically.

  The file is written by `sr_jax.files.atomic_write`: a reader never sees a
  partial file, and a failed write leaves an existing file as it was.

  Args:
    path: destination file (its folder is created if missing).
    variables: Flax variables (`{"params": ..., "batch_stats": ...}`).
    arch: architecture name; the tensors are validated against it.
    metadata: extra string metadata (e.g. `source_sha256`).

  Returns:
    The path written.

  Raises:
    ValueError: if `arch` is unknown or the tensors do not fit it.
  """
  spec = archs.get_arch(arch)
  flat = {k: np.ascontiguousarray(np.asarray(v))
          for k, v in flatten(variables).items()}
  check_tensors(flat, arch)
  meta = {"format": FORMAT, "arch": arch, "num_classes": str(spec.num_classes),
          "preprocessing": json.dumps(spec.preprocessing.to_dict()),
          "source_layout": "", "source_sha256": ""}
  meta.update({str(k): str(v) for k, v in (metadata or {}).items()})
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  files.atomic_write(path, safetensors.numpy.save(flat, metadata=meta))
  return path


def sniff(path: PathLike) -> Optional[str]:
  """What torch.save wrote, going by a file's first bytes, or None.

  Args:
    path: any file.

  Returns:
    "zip" for a zip archive (torch.save's default format), "pickle" for a
    bare pickle of protocol 2 to 5 (`_use_new_zipfile_serialization=False`),
    None for anything else. Nothing is unpickled.
  """
  with open(path, "rb") as f:
    head = f.read(4)
  if head == _ZIP_MAGIC:
    return "zip"
  if len(head) >= 2 and head[0] == _PICKLE_PROTO and \
      head[1] in _PICKLE_PROTOCOLS:
    return "pickle"
  return None


def _open_error(path: PathLike, err: Exception) -> ValueError:
  """The error for a file safetensors cannot open, saying what it is."""
  try:
    kind = sniff(path)
  except OSError:
    kind = None
  if kind is not None:
    what = ("a zip archive, as torch.save writes" if kind == "zip" else
            "a Python pickle, as torch.save writes with "
            "_use_new_zipfile_serialization=False")
    return ValueError(
        f"`path` (={str(path)!r}) is {what} (a PyTorch checkpoint?), not a "
        f"safetensors file; it is not unpickled. {CONVERT_COMMAND} turns a "
        "PyTorch state dict into safetensors: `sr-jax-convert --arch=ARCH "
        f"--src={os.fspath(path)} --dst=OUT.safetensors` (see "
        "weights/README.md).")
  return ValueError(
      f"`path` (={str(path)!r}) is not a readable safetensors file "
      f"(truncated or corrupt?): {type(err).__name__}: {err}")


def check_exists(path: PathLike) -> None:
  """Raises FileNotFoundError, naming `path`, unless it is a file."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"`path` (={str(path)!r}) is not a file.")


def read(path: PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
  """Every tensor of a safetensors file, by name, and its string metadata.

  Raises:
    FileNotFoundError: if `path` is not a file.
    ValueError: if it is not a readable safetensors file (a PyTorch
      checkpoint is named as such).
  """
  check_exists(path)
  try:
    with safetensors.safe_open(os.fspath(path), framework="numpy") as f:
      return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
  except (safetensors.SafetensorError, OSError, ValueError) as err:
    raise _open_error(path, err) from None


def read_metadata(path: PathLike) -> dict[str, str]:
  """The string metadata of a safetensors file (empty dict if none).

  Raises:
    FileNotFoundError: if `path` is not a file.
    ValueError: if it is not a readable safetensors file.
  """
  check_exists(path)
  try:
    with safetensors.safe_open(os.fspath(path), framework="numpy") as f:
      return dict(f.metadata() or {})
  except (safetensors.SafetensorError, OSError, ValueError) as err:
    raise _open_error(path, err) from None


def load(path: PathLike, *, arch: Optional[str] = None):
  """Loads a file written by `save`/`convert_file` as `(model, variables)`.

  Every tensor's name, shape and dtype is checked against the architecture.

  Args:
    path: a safetensors file in our naming.
    arch: the architecture to build; defaults to the file's `arch` metadata.

  Returns:
    The Flax module and its variables (JAX arrays).

  Raises:
    FileNotFoundError: if `path` is not a file.
    ValueError: if the file is unreadable, names no architecture, or its
      tensors do not fit `arch`.
  """
  flat, meta = read(path)
  stated = meta.get("arch")
  if arch is None and stated is None:
    raise ValueError(f"`path` (={str(path)!r}) has no `arch` metadata; pass "
                     f"`arch=` (one of {', '.join(sorted(archs.ARCHS))}).")
  arch = arch or stated
  spec = archs.get_arch(arch)
  note = f" (the file says arch={stated!r})" if stated not in (None, arch) else ""
  try:
    check_tensors(flat, arch, source=f"{str(path)!r}{note}")
  except ValueError as err:
    raise ValueError(str(err)) from None
  if note:
    raise ValueError(f"`path` (={str(path)!r}) holds weights for {stated!r}, "
                     f"not for `arch` (={arch!r}), although the shapes fit.")
  variables = jax.tree.map(jnp.asarray, unflatten(flat))
  return spec.module(), variables


def sha256(path: PathLike) -> str:
  """The hex sha256 of a file, read in 1 MiB blocks."""
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()
