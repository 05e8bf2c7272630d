"""Image files in and result files out, with validation and clear errors.

Everything that touches the file system sits here, at the edge of the
library: `load_image` turns any file PIL can read into a uint8 HxWx3 array
(or raises `ImageLoadError` saying what is wrong with which path), and the
writers (`atomic_write`, `save_png`, `save_npz`) write to a temporary name in
the target's directory and rename it into place with `os.replace`, so that a
reader (or a re-run after a crash) never sees a partial file.
"""

from __future__ import annotations

import contextlib
import glob
import io
import os
import secrets
import threading
import warnings
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

PathLike = Union[str, os.PathLike]

# PIL's own default (`Image.MAX_IMAGE_PIXELS`): 1024**3 // 4 // 3 pixels, a
# quarter GiB of RGB data. Larger images are refused as decompression bombs.
DEFAULT_MAX_PIXELS = 89_478_485

# File name suffixes that `list_images` picks up from a folder.
IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".pbm", ".pgm", ".png",
                  ".ppm", ".tif", ".tiff", ".webp")

# Temporary files of the atomic writers are named `.<name>.<hex>.tmp`.
TEMP_SUFFIX = ".tmp"

_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_UINT16_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
_TRUNCATED_LOCK = threading.Lock()


class ImageLoadError(ValueError):
  """An image file that cannot be read; the message names the path and why."""


def load_image(
    path: PathLike,
    *,
    max_pixels: Optional[int] = DEFAULT_MAX_PIXELS,
    background: Sequence[int] = (255, 255, 255),
) -> np.ndarray:
  """Reads an image file as a uint8 HxWx3 RGB array, fully decoded.

  Conversions:
    * EXIF orientation is applied (`PIL.ImageOps.exif_transpose`), so the
      array is upright as a viewer shows it. Unreadable EXIF is ignored.
    * Transparency (RGBA, LA, PA, premultiplied modes, and palette or
      grayscale images with a `transparency` entry) is composited over
      `background` (white by default), i.e. the image as a viewer shows it on
      a white page. Pixels under alpha 0 often hold arbitrary colours, which
      is why alpha is not simply dropped.
    * 16-bit images (I;16, I;16L, I;16B, and mode I with values in 0..65535)
      are scaled to 8 bit with rounding, v -> round(v * 255 / 65535).
      16-bit RGB(A) PNGs are reduced to 8 bit by PIL itself while decoding
      (it keeps the high byte, i.e. floor(v / 256), within 1 of the rounded
      value); PIL has no 16-bit RGB mode to do better.
    * Float images (mode F) must hold values in [0, 1]; they are scaled by 255.
    * Grayscale, bilevel, palette, CMYK and YCbCr images go through PIL's
      `convert("RGB")`. ICC colour profiles are not applied.
    * Multi-frame files (GIF, TIFF) give their first frame.

  Args:
    path: the image file.
    max_pixels: the largest width * height accepted; a larger image is refused
      as a possible decompression bomb before its pixels are decoded. `None`
      turns this check off, but PIL still refuses images over twice
      `PIL.Image.MAX_IMAGE_PIXELS` (raise that global to go further).
    background: the RGB colour that transparent pixels are composited on.

  Returns:
    uint8 array of shape (H, W, 3).

  Raises:
    ImageLoadError: (a ValueError) if the path is missing, a directory, empty,
      not an image, truncated or corrupt, too large, or of a mode that cannot
      be turned into RGB. The message names the path.

  Examples:
    >>> image = load_image("photo.jpg")  # doctest: +SKIP
    >>> image.shape, image.dtype  # doctest: +SKIP
    ((480, 640, 3), dtype('uint8'))
  """
  path = Path(path)
  _check_file(path)
  try:
    with _strict_truncation(), warnings.catch_warnings():
      # Our own `max_pixels` check below replaces PIL's warning.
      warnings.simplefilter("ignore", Image.DecompressionBombWarning)
      with Image.open(path) as im:
        _check_size(path, im.size, max_pixels)
        im.load()  # Decodes everything now, so truncation is caught here.
        return _to_rgb_uint8(path, _upright(im), background)
  except ImageLoadError:
    raise
  except PermissionError as e:
    raise ImageLoadError(
        f"`path` ({str(path)!r}) cannot be read: permission denied.") from e
  except Image.DecompressionBombError as e:
    raise ImageLoadError(
        f"`path` ({str(path)!r}) is refused as a possible decompression bomb: "
        f"{e}") from e
  except UnidentifiedImageError as e:
    with open(path, "rb") as f:
      head = f.read(16)
    raise ImageLoadError(
        f"`path` ({str(path)!r}) is not an image file PIL can read (it starts "
        f"with {head!r}).") from e
  except (OSError, SyntaxError, ValueError, EOFError, IndexError,
          TypeError) as e:
    raise ImageLoadError(
        f"`path` ({str(path)!r}) is truncated or corrupt: "
        f"{type(e).__name__}: {e}") from e


def _check_file(path: Path) -> None:
  if not path.exists():
    raise ImageLoadError(f"`path` ({str(path)!r}) does not exist.")
  if path.is_dir():
    raise ImageLoadError(
        f"`path` ({str(path)!r}) is a directory, not an image file.")
  if not path.is_file():
    raise ImageLoadError(f"`path` ({str(path)!r}) is not a regular file.")
  if path.stat().st_size == 0:
    raise ImageLoadError(f"`path` ({str(path)!r}) is empty (0 bytes).")


def _check_size(path: Path, size: tuple[int, int],
                max_pixels: Optional[int]) -> None:
  width, height = size
  if width < 1 or height < 1:
    raise ImageLoadError(
        f"`path` ({str(path)!r}) has an empty size ({width}x{height}).")
  if max_pixels is not None and width * height > max_pixels:
    raise ImageLoadError(
        f"`path` ({str(path)!r}) is refused as a possible decompression bomb: "
        f"{width}x{height} = {width * height} pixels exceeds `max_pixels` "
        f"(={max_pixels}).")


@contextlib.contextmanager
def _strict_truncation() -> Iterator[None]:
  """Keeps PIL's `LOAD_TRUNCATED_IMAGES` off while decoding.

  Only when some other code has switched the global on is it switched off for
  the duration (under a lock) and restored afterwards.
  """
  if not ImageFile.LOAD_TRUNCATED_IMAGES:
    yield
    return
  with _TRUNCATED_LOCK:
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
      yield
    finally:
      ImageFile.LOAD_TRUNCATED_IMAGES = True


def _upright(im: Image.Image) -> Image.Image:
  try:
    return ImageOps.exif_transpose(im)
  except Exception:  # Broken EXIF must not make an image unreadable.  pylint: disable=broad-except
    return im


def _convert(path: Path, im: Image.Image, mode: str) -> Image.Image:
  try:
    return im.convert(mode)
  except ValueError as e:
    raise ImageLoadError(
        f"`path` ({str(path)!r}) has mode {im.mode!r}, which PIL cannot "
        f"convert to {mode}: {e}") from e


def _to_rgb_uint8(path: Path, im: Image.Image,
                  background: Sequence[int]) -> np.ndarray:
  mode = im.mode
  if mode in _UINT16_MODES or mode == "I":
    values = np.asarray(im).astype(np.int64)
    if values.min() < 0 or values.max() > 65535:
      raise ImageLoadError(
          f"`path` ({str(path)!r}) is a 32-bit integer image with values in "
          f"[{values.min()}, {values.max()}]; only 0..65535 (16-bit) is "
          "supported.")
    gray = ((values * 255 + 32767) // 65535).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=-1)
  if mode == "F":
    values = np.asarray(im, dtype=np.float64)
    if not np.all(np.isfinite(values)) or values.min() < 0 or values.max() > 1:
      raise ImageLoadError(
          f"`path` ({str(path)!r}) is a float image with values outside "
          "[0, 1] (or not finite); only [0, 1] is supported.")
    gray = np.round(values * 255).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=-1)
  if mode in _ALPHA_MODES or "transparency" in im.info:
    rgba = np.asarray(_convert(path, im, "RGBA")).astype(np.uint32)
    bg = np.asarray(background, np.uint32).reshape(1, 1, 3)
    alpha = rgba[..., 3:]
    out = (rgba[..., :3] * alpha + bg * (255 - alpha) + 127) // 255
    return out.astype(np.uint8)
  return np.array(_convert(path, im, "RGB"), dtype=np.uint8)


def list_images(input: PathLike, *, recursive: bool = False) -> list[Path]:  # pylint: disable=redefined-builtin
  """The image paths named by a folder, a glob pattern or a single file.

  A folder gives its entries whose suffix is one of `IMAGE_SUFFIXES` (any
  case), including directories named like images, so that a batch run can
  report them as failures instead of skipping them silently. A glob pattern
  gives every path it matches (the pattern is the filter). Temporary files of
  the atomic writers are never listed.

  Args:
    input: a folder, a glob pattern (`photos/*.jpg`, `data/**/*.png`) or a
      file.
    recursive: for a folder, also look in its subfolders.

  Returns:
    The paths, sorted by their string form. Empty when nothing matches.

  Raises:
    ValueError: if `input` is neither an existing path nor a glob pattern.
  """
  text = os.fspath(input)
  path = Path(text)
  if path.is_dir():
    entries = path.rglob("*") if recursive else path.iterdir()
    found = [p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES]
  elif path.exists():
    found = [path]
  elif glob.has_magic(text):
    found = [Path(p) for p in glob.glob(text, recursive=True)]
  else:
    raise ValueError(
        f"`input` ({text!r}) is neither an existing file or folder nor a glob "
        "pattern.")
  return sorted((p for p in found if not _is_temp(p)), key=str)


def _is_temp(path: Path) -> bool:
  return path.name.startswith(".") and path.name.endswith(TEMP_SUFFIX)


def atomic_write(path: PathLike, data: bytes) -> None:
  """Writes `data` to `path` so that `path` is never seen half-written.

  The bytes go to a new temporary file `.<name>.<random>.tmp` in the same
  directory, which is flushed to disk and renamed onto `path` with
  `os.replace` (atomic on POSIX and Windows). On any failure the temporary
  file is removed and `path` is left as it was.

  Args:
    path: the destination; its directory must exist.
    data: the file's full contents.

  Raises:
    FileNotFoundError: if the directory of `path` does not exist.
    TypeError: if `data` is not bytes-like.
  """
  path = Path(path)
  if not isinstance(data, (bytes, bytearray, memoryview)):
    raise TypeError(
        f"`data` (type={type(data).__name__}) must be bytes, bytearray or "
        "memoryview.")
  directory = path.parent
  if not directory.is_dir():
    raise FileNotFoundError(
        f"The directory of `path` ({str(path)!r}) does not exist.")
  temp = directory / f".{path.name}.{secrets.token_hex(6)}{TEMP_SUFFIX}"
  fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(temp, path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.unlink(temp)
    raise


def remove_temp_files(directory: PathLike) -> int:
  """Deletes temporary files the atomic writers left in `directory`.

  Only a process killed mid-write leaves one behind. Call this at the start
  of a run, when no other writer is active in `directory`.

  Returns:
    The number of files removed.
  """
  removed = 0
  for p in Path(directory).iterdir():
    if p.is_file() and _is_temp(p):
      with contextlib.suppress(FileNotFoundError):
        p.unlink()
        removed += 1
  return removed


def save_png(path: PathLike, image: Union[Image.Image, np.ndarray]) -> None:
  """Writes a PIL image or a uint8 array (HxW, HxWx3, HxWx4) as PNG, atomically.

  Args:
    path: the destination file.
    image: a `PIL.Image.Image`, or a uint8 array of shape HxW (grayscale),
      HxWx3 (RGB) or HxWx4 (RGBA).

  Raises:
    ValueError: if `image` is an array of another dtype or shape.
  """
  if not isinstance(image, Image.Image):
    array = np.asarray(image)
    if array.dtype != np.uint8:
      raise ValueError(
          f"`image` (dtype={array.dtype}) must be uint8 or a PIL image; "
          "convert floats in [0, 1] with `(x * 255).round().astype(np.uint8)`.")
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (3, 4))):
      raise ValueError(
          f"`image` (shape={array.shape}) must be HxW, HxWx3 or HxWx4.")
    image = Image.fromarray(np.ascontiguousarray(array))
  buffer = io.BytesIO()
  image.save(buffer, format="PNG")
  atomic_write(path, buffer.getvalue())


def save_npz(path: PathLike, /, **arrays) -> None:
  """Writes arrays to a compressed `.npz` file, atomically.

  Args:
    path: the destination file (give it the `.npz` suffix yourself).
    **arrays: the arrays by name (NumPy or JAX arrays, or anything
      `np.asarray` takes). Object arrays are refused, since reading them back
      would need pickle.

  Raises:
    ValueError: if no arrays are given, or one has dtype object.

  Examples:
    >>> save_npz("out/cat.npz", relevance=R, sr=S)  # doctest: +SKIP
    >>> np.load("out/cat.npz", allow_pickle=False)["sr"]  # doctest: +SKIP
  """
  if not arrays:
    raise ValueError("`arrays` is empty; pass at least one array by name.")
  converted = {}
  for name, value in arrays.items():
    array = np.asarray(value)
    if array.dtype == object:
      raise ValueError(
          f"`{name}` (dtype=object) cannot be saved without pickle; pass a "
          "numeric or string array.")
    converted[name] = array
  buffer = io.BytesIO()
  np.savez_compressed(buffer, **converted)
  atomic_write(path, buffer.getvalue())
