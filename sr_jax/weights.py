"""Weight files: convert PyTorch state dicts, save and load safetensors.

Our files are safetensors (no pickle) with one tensor per Flax variable, named
by its path (`params/features_0/kernel`, `batch_stats/features_1/mean`), and
string metadata: `arch`, `num_classes`, `source_layout`, `source_sha256`,
`preprocessing` (JSON) and `format`.

Three source layouts convert (`convert_state_dict`):

* `torchvision`: `features.0.weight`, ..., `classifier.6.bias`.
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

import functools
import hashlib
import http.client
import json
import os
import pathlib
import re
import tempfile
import urllib.error
import urllib.request
from typing import Any, Mapping, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np
import safetensors
import safetensors.numpy

from sr_jax.models import registry

PathLike = Union[str, os.PathLike]
LAYOUTS = ("torchvision", "timm", "vgg_face_dag")
FORMAT = "sr_jax.weights/1"
# Official torchvision files; the hex part of each name is the start of the
# file's sha256 (torch.hub's convention), which `fetch` verifies.
TORCHVISION_FILES = {
    "alexnet": "alexnet-owt-7be5be79.pth",
    "vgg11": "vgg11-8a719046.pth", "vgg13": "vgg13-19584684.pth",
    "vgg16": "vgg16-397923af.pth", "vgg19": "vgg19-dcbb9e9d.pth",
    "vgg11_bn": "vgg11_bn-6002323d.pth", "vgg13_bn": "vgg13_bn-abd245e5.pth",
    "vgg16_bn": "vgg16_bn-6c64b313.pth", "vgg19_bn": "vgg19_bn-c79401a0.pth",
}
TORCHVISION_BASE_URL = "https://download.pytorch.org/models/"
BASE_URL_ENV = "SR_JAX_WEIGHTS_BASE_URL"
CACHE_ENV = "SR_JAX_CACHE"
OFFLINE_ENV = "SR_JAX_OFFLINE"
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


def _natural(name: str) -> list[Any]:
  return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _layer_order(name: str) -> tuple[Any, ...]:
  """Sort key: params first, then features, other layers, classifier; by index."""
  collection, _, rest = name.partition("/")
  module, _, leaf = rest.rpartition("/")
  rank = {"features": 0, "classifier": 2}.get(module.split("_")[0], 1)
  return (collection != "params", rank, _natural(module), leaf != "kernel",
          leaf)


def expected_shapes(arch: str) -> dict[str, tuple[int, ...]]:
  """Every variable of `arch` as `{"params/features_0/kernel": shape}`.

  Computed abstractly (`jax.eval_shape`), in the model's layer order.
  """
  return dict(_expected_shapes(registry.get_arch(arch)))


@functools.lru_cache(maxsize=64)
def _expected_shapes(spec: registry.ArchSpec):
  x = jax.ShapeDtypeStruct((1, spec.input_size, spec.input_size, 3),
                           np.float32)
  tree = jax.eval_shape(spec.module().init, jax.random.PRNGKey(0), x)
  flat = {k: tuple(v.shape) for k, v in flatten(tree).items()}
  return tuple(sorted(flat.items(), key=lambda kv: _layer_order(kv[0])))


def flatten(variables: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  """Nested variables as `{"params/features_0/kernel": array, ...}`."""
  out = {}
  for k, v in variables.items():
    if isinstance(v, Mapping):
      out.update(flatten(v, f"{prefix}{k}/"))
    else:
      out[f"{prefix}{k}"] = v
  return out


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
  """The inverse of `flatten`."""
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
  extra = sorted(set(flat) - set(expected), key=_layer_order)
  if extra:
    raise ValueError(
        f"Weights{where} do not fit architecture `{arch}`: unexpected tensor "
        f"`{extra[0]}` (shape {tuple(np.shape(flat[extra[0]]))})"
        f"{f' and {len(extra) - 1} more' if len(extra) > 1 else ''}.")


def detect_layout(keys) -> str:
  """Guesses the source layout of a state dict from its key names."""
  keys = set(keys)
  if any(k.startswith("pre_logits.") or k.startswith("head.") for k in keys):
    return "timm"
  if "conv1_1.weight" in keys:
    return "vgg_face_dag"
  return "torchvision"


def convert_state_dict(state_dict: Mapping[str, Any], arch: str, *,
                       layout: str = "torchvision") -> dict[str, Any]:
  """Converts a PyTorch state dict to Flax variables for `arch`.

  Pure NumPy: conv kernels OIHW -> HWIO, dense weights transposed, BatchNorm
  `weight/bias/running_mean/running_var` -> `params` scale/bias and
  `batch_stats` mean/var (`num_batches_tracked` is dropped). Floating tensors
  become float32.

  Args:
    state_dict: tensor name -> array (NumPy, or anything `np.asarray` takes).
    arch: target architecture, e.g. "vgg16".
    layout: "torchvision", "timm" or "vgg_face_dag" (see the module doc).

  Returns:
    `{"params": ..., "batch_stats": ...}` (no `batch_stats` without BN),
    validated against `arch`.

  Examples:
    >>> variables = convert_state_dict(torch_model.state_dict(), "vgg16")
  """
  if layout not in LAYOUTS:
    raise ValueError(f"`layout` (={layout!r}) must be one of {LAYOUTS}.")
  expected = expected_shapes(arch)
  renames = {"timm": _TIMM_NAMES, "vgg_face_dag": _FACE_NAMES}.get(layout, {})
  flat: dict[str, np.ndarray] = {}
  for key, value in state_dict.items():
    module, _, param = key.rpartition(".")
    if param == "num_batches_tracked":
      continue
    module = renames.get(module, module).replace(".", "_")
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


def save(path: PathLike, variables: Mapping[str, Any], *, arch: str,
         metadata: Optional[Mapping[str, str]] = None) -> pathlib.Path:
  """Writes `variables` of `arch` to a safetensors file (atomically).

  Args:
    path: destination file.
    variables: Flax variables (`{"params": ..., "batch_stats": ...}`).
    arch: architecture name; the tensors are validated against it.
    metadata: extra string metadata (e.g. `source_sha256`).

  Returns:
    The path written.
  """
  spec = registry.get_arch(arch)
  flat = {k: np.ascontiguousarray(np.asarray(v))
          for k, v in flatten(variables).items()}
  check_tensors(flat, arch)
  meta = {"format": FORMAT, "arch": arch, "num_classes": str(spec.num_classes),
          "preprocessing": json.dumps(spec.preprocessing.to_dict()),
          "source_layout": "", "source_sha256": ""}
  meta.update({str(k): str(v) for k, v in (metadata or {}).items()})
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
  os.close(fd)
  try:
    safetensors.numpy.save_file(flat, tmp, metadata=meta)
    os.chmod(tmp, 0o644)  # mkstemp's 0600 is too private for a weight file
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  return path


def _open_error(path: PathLike, err: Exception) -> ValueError:
  return ValueError(
      f"`path` (={str(path)!r}) is not a readable safetensors file "
      f"(truncated or corrupt?): {type(err).__name__}: {err}")


def read_metadata(path: PathLike) -> dict[str, str]:
  """The string metadata of a safetensors file (empty dict if none)."""
  _check_exists(path)
  try:
    with safetensors.safe_open(os.fspath(path), framework="numpy") as f:
      return dict(f.metadata() or {})
  except (safetensors.SafetensorError, OSError, ValueError) as err:
    raise _open_error(path, err) from None


def _check_exists(path: PathLike) -> None:
  if not os.path.isfile(path):
    raise FileNotFoundError(f"`path` (={str(path)!r}) is not a file.")


def load(path: PathLike, *, arch: Optional[str] = None):
  """Loads a file written by `save`/`convert_file` as `(model, variables)`.

  Every tensor's name, shape and dtype is checked against the architecture.

  Args:
    path: a safetensors file in our naming.
    arch: the architecture to build; defaults to the file's `arch` metadata.

  Returns:
    The Flax module and its variables (JAX arrays).
  """
  _check_exists(path)
  try:
    with safetensors.safe_open(os.fspath(path), framework="numpy") as f:
      meta = dict(f.metadata() or {})
      flat = {k: f.get_tensor(k) for k in f.keys()}
  except (safetensors.SafetensorError, OSError, ValueError) as err:
    raise _open_error(path, err) from None
  stated = meta.get("arch")
  if arch is None and stated is None:
    raise ValueError(f"`path` (={str(path)!r}) has no `arch` metadata; pass "
                     f"`arch=` (one of {', '.join(sorted(registry.ARCHS))}).")
  arch = arch or stated
  spec = registry.get_arch(arch)
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


def _read_source(src: PathLike) -> tuple[dict[str, np.ndarray], str]:
  """Tensors of a `.pth`/`.pt`/`.bin` or `.safetensors` file, and its sha256."""
  _check_exists(src)
  digest = sha256(src)
  if str(src).endswith(".safetensors"):
    try:
      return dict(safetensors.numpy.load_file(os.fspath(src))), digest
    except (safetensors.SafetensorError, OSError, ValueError) as err:
      raise _open_error(src, err) from None
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise ImportError(
        f"Reading `src` (={str(src)!r}) needs torch: `pip install "
        "'sr_jax[torch]'`, or give a .safetensors state dict.") from None
  try:
    obj = torch.load(os.fspath(src), map_location="cpu", weights_only=True)
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


def sha256(path: PathLike) -> str:
  """The hex sha256 of a file, read in 1 MiB blocks."""
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


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

  Examples:
    >>> convert_file("vgg16-397923af.pth", "weights/vgg16.safetensors",
    ...              arch="vgg16")
  """
  registry.get_arch(arch)
  state_dict, digest = _read_source(src)
  state_dict = {k.removeprefix("module."): v for k, v in state_dict.items()}
  layout = layout or detect_layout(state_dict)
  variables = convert_state_dict(state_dict, arch, layout=layout)
  return save(dst, variables, arch=arch, metadata={
      "source_layout": layout, "source_sha256": digest,
      "source_file": os.path.basename(os.fspath(src))})


def default_cache_dir() -> pathlib.Path:
  """`$SR_JAX_CACHE`, else `~/.cache/sr_jax`."""
  env = os.environ.get(CACHE_ENV)
  return pathlib.Path(env) if env else pathlib.Path.home() / ".cache" / "sr_jax"


def fetch(arch: str, cache_dir: Optional[PathLike] = None, *,
          url: Optional[str] = None, base_url: Optional[str] = None,
          timeout: float = 30.0) -> pathlib.Path:
  """Downloads, verifies, converts and caches the official torchvision weights.

  The file comes from `url`, else `base_url` (or `$SR_JAX_WEIGHTS_BASE_URL`,
  else download.pytorch.org) plus torchvision's file name. Its sha256 must
  start with the hex part of the file name, as torch.hub checks. The result is
  `<cache_dir>/<arch>.safetensors`; a cached file is returned at once.
  `$SR_JAX_OFFLINE=1` forbids downloading.

  Args:
    arch: an architecture with official weights (see `TORCHVISION_FILES`).
    cache_dir: where converted files live; default `default_cache_dir()`.
    url: full URL of a torchvision-layout `.pth` (its name may carry a hash).
    base_url: a mirror of download.pytorch.org/models/.
    timeout: seconds to wait for the server.

  Returns:
    Path of the converted safetensors file.
  """
  registry.get_arch(arch)
  cache = pathlib.Path(cache_dir) if cache_dir is not None else default_cache_dir()
  dst = cache / f"{arch}.safetensors"
  if dst.is_file():
    return dst
  if url is None:
    if arch not in TORCHVISION_FILES:
      raise ValueError(
          f"No official download for `arch` (={arch!r}); known: "
          f"{', '.join(TORCHVISION_FILES)}. See weights/README.md to convert "
          "a local file.")
    base = base_url or os.environ.get(BASE_URL_ENV) or TORCHVISION_BASE_URL
    url = base.rstrip("/") + "/" + TORCHVISION_FILES[arch]
  name = url.rstrip("/").rsplit("/", 1)[-1] or f"{arch}.pth"
  how = (f"To use a file you already have, convert it: `python -m "
         f"sr_jax.scripts.convert --arch={arch} --src=PATH/{name} "
         f"--dst={dst}` (see weights/README.md).")
  if os.environ.get(OFFLINE_ENV, "") not in ("", "0"):
    raise ConnectionError(f"${OFFLINE_ENV} is set, so {url} is not fetched. "
                          + how)
  cache.mkdir(parents=True, exist_ok=True)
  suffix = ".safetensors" if name.endswith(".safetensors") else ".pth"
  fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=suffix, dir=cache)
  try:
    try:
      with os.fdopen(fd, "wb") as out, \
          urllib.request.urlopen(url, timeout=timeout) as response:
        for block in iter(lambda: response.read(1 << 20), b""):
          out.write(block)
    except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
      raise ConnectionError(f"Could not download {url} ({err}). " + how) \
          from None
    match = re.search(r"-([0-9a-f]{6,64})\.", name)
    digest = sha256(tmp)
    if match and not digest.startswith(match.group(1)):
      raise ValueError(f"Downloaded {url} has sha256 {digest}, which does not "
                       f"start with {match.group(1)} as its name promises; "
                       "the file is corrupt or not the official one.")
    return convert_file(tmp, dst, arch=arch)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def bundled_path(name: str) -> Optional[pathlib.Path]:
  """`weights/<name>.safetensors` shipped with the project, or None.

  Looks in `$SR_JAX_WEIGHTS_DIR`, then the `weights/` folder beside the
  package (a source checkout or editable install).
  """
  dirs = [os.environ.get("SR_JAX_WEIGHTS_DIR"),
          pathlib.Path(__file__).resolve().parent.parent / "weights"]
  for d in dirs:
    if d and (pathlib.Path(d) / f"{name}.safetensors").is_file():
      return pathlib.Path(d) / f"{name}.safetensors"
  return None
