"""Downloads and bundled files: `fetch` official weights into a cache, and
find the weights shipped with the project (`bundled_path`).

Official torchvision files are downloaded once, their sha256 checked against
the hash in their name (torch.hub's convention), converted by
`sr_jax.weights.convert_file` and cached as `<cache>/<arch>.safetensors`.
"""

from __future__ import annotations

import http.client
import os
import pathlib
import re
import tempfile
import urllib.error
import urllib.request
from typing import Optional

from sr_jax import archs
from sr_jax.weights.convert import convert_file
from sr_jax.weights.format import PathLike, sha256

# Official torchvision files; the hex part of each name is the start of the
# file's sha256 (torch.hub's convention), which `fetch` verifies.
TORCHVISION_FILES = {
    "alexnet": "alexnet-owt-7be5be79.pth",
    "vgg11": "vgg11-8a719046.pth", "vgg13": "vgg13-19584684.pth",
    "vgg16": "vgg16-397923af.pth", "vgg19": "vgg19-dcbb9e9d.pth",
    "vgg11_bn": "vgg11_bn-6002323d.pth", "vgg13_bn": "vgg13_bn-abd245e5.pth",
    "vgg16_bn": "vgg16_bn-6c64b313.pth", "vgg19_bn": "vgg19_bn-c79401a0.pth",
    "resnet18": "resnet18-f37072fd.pth", "resnet50": "resnet50-0676ba61.pth",
}
TORCHVISION_BASE_URL = "https://download.pytorch.org/models/"
BASE_URL_ENV = "SR_JAX_WEIGHTS_BASE_URL"
CACHE_ENV = "SR_JAX_CACHE"
OFFLINE_ENV = "SR_JAX_OFFLINE"
WEIGHTS_DIR_ENV = "SR_JAX_WEIGHTS_DIR"
# The checkout (or editable install) that holds the package sr_jax/.
_REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


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

  Raises:
    ValueError: for an unknown `arch`, one without an official file, or a
      download whose sha256 does not match its name.
    ConnectionError: if the download fails or `$SR_JAX_OFFLINE` is set; the
      message says how to convert a local file instead.
  """
  archs.get_arch(arch)
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
  dirs = [os.environ.get(WEIGHTS_DIR_ENV),
          _REPO_ROOT / "weights"]
  for d in dirs:
    if d and (pathlib.Path(d) / f"{name}.safetensors").is_file():
      return pathlib.Path(d) / f"{name}.safetensors"
  return None
