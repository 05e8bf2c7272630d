"""Tests for sr_jax.files: every image mode, broken files, bombs, atomic writes."""

import importlib
import os
import struct
import sys
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

import sr_jax
from sr_jax import files


def _chunk(kind: bytes, data: bytes) -> bytes:
  crc = zlib.crc32(kind + data) & 0xFFFFFFFF
  return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def _png_bytes(width, height, *, depth=8, color_type=2, raw=b""):
  """A PNG written by hand, so headers can claim anything."""
  header = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
  return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
          + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b""))


def _mode(path):
  with Image.open(path) as im:
    return im.mode


def _scale16(v):
  return np.round(np.asarray(v, np.float64) * 255 / 65535)


@pytest.fixture
def photo(rng):
  return rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)


# --- modes -----------------------------------------------------------------


def test_rgb_png_round_trip(tmp_path, photo):
  Image.fromarray(photo).save(tmp_path / "a.png")
  out = files.load_image(tmp_path / "a.png")
  assert out.dtype == np.uint8 and out.shape == (12, 10, 3)
  np.testing.assert_array_equal(out, photo)


def test_grayscale_and_bilevel(tmp_path, photo):
  gray = photo[..., 0]
  Image.fromarray(gray).save(tmp_path / "g.png")
  np.testing.assert_array_equal(files.load_image(tmp_path / "g.png"),
                                np.repeat(gray[..., None], 3, -1))
  Image.fromarray(gray > 127).save(tmp_path / "b.png")  # mode "1"
  np.testing.assert_array_equal(files.load_image(tmp_path / "b.png")[..., 1],
                                np.where(gray > 127, 255, 0))


def _over_white(rgb, alpha):
  rgb, alpha = rgb.astype(np.float64), alpha.astype(np.float64)[..., None]
  return np.round((rgb * alpha + 255 * (255 - alpha)) / 255)


def test_rgba_and_la_are_composited_on_white(tmp_path, photo, rng):
  alpha = rng.integers(0, 256, photo.shape[:2], dtype=np.uint8)
  alpha[0, 0], alpha[0, 1] = 0, 255
  Image.fromarray(np.dstack([photo, alpha])).save(tmp_path / "rgba.png")
  out = files.load_image(tmp_path / "rgba.png")
  np.testing.assert_array_equal(out, _over_white(photo, alpha))
  assert tuple(out[0, 0]) == (255, 255, 255)
  assert tuple(out[0, 1]) == tuple(photo[0, 1])

  gray = photo[..., 0]
  Image.fromarray(np.dstack([gray, alpha]), "LA").save(tmp_path / "la.png")
  out = files.load_image(tmp_path / "la.png")
  np.testing.assert_array_equal(out[..., 2],
                                _over_white(gray[..., None], alpha)[..., 0])
  black = files.load_image(tmp_path / "la.png", background=(0, 0, 0))
  assert tuple(black[0, 0]) == (0, 0, 0)


def test_palette_with_and_without_transparency(tmp_path):
  im = Image.new("P", (4, 3))
  im.putpalette([255, 0, 0, 0, 128, 255] + [0] * 762)  # 0 red, 1 blue-ish
  im.putpixel((2, 1), 1)
  im.save(tmp_path / "p.png")
  out = files.load_image(tmp_path / "p.png")
  assert tuple(out[0, 0]) == (255, 0, 0) and tuple(out[1, 2]) == (0, 128, 255)
  im.save(tmp_path / "pt.png", transparency=0)  # red is transparent
  out = files.load_image(tmp_path / "pt.png")
  assert tuple(out[0, 0]) == (255, 255, 255)
  assert tuple(out[1, 2]) == (0, 128, 255)
  im.save(tmp_path / "p.gif", transparency=0)
  assert tuple(files.load_image(tmp_path / "p.gif")[0, 0]) == (255, 255, 255)


def test_16bit_grayscale_png_is_scaled_not_clipped(tmp_path):
  v = np.array([[0, 257, 383, 511], [32768, 40000, 65280, 65535]], np.uint16)
  Image.fromarray(v).save(tmp_path / "g16.png")
  assert _mode(tmp_path / "g16.png") == "I;16"
  out = files.load_image(tmp_path / "g16.png")
  np.testing.assert_array_equal(out[..., 0], _scale16(v))
  np.testing.assert_array_equal(out[..., 0], out[..., 2])


@pytest.mark.parametrize("mode", ["I;16B", "I"])
def test_16bit_tiff_modes(tmp_path, mode):
  v = np.array([[0, 1000, 32768], [50000, 65000, 65535]])
  if mode == "I":
    im = Image.fromarray(v.astype(np.int32))
  else:
    im = Image.frombytes(mode, (3, 2), v.astype(">u2").tobytes())
  im.save(tmp_path / "x.tif")
  assert _mode(tmp_path / "x.tif") == mode
  np.testing.assert_array_equal(files.load_image(tmp_path / "x.tif")[..., 1],
                                _scale16(v))


def test_32bit_integer_out_of_16bit_range_is_refused(tmp_path):
  Image.fromarray(np.array([[70000, 5]], np.int32)).save(tmp_path / "i.tif")
  with pytest.raises(files.ImageLoadError, match=r"values in \[5, 70000\]"):
    files.load_image(tmp_path / "i.tif")


def test_16bit_rgb_png(tmp_path):
  # PIL cannot write 16-bit RGB, so the PNG is written by hand. PIL decodes
  # it to 8 bit itself (high byte): within 1 of the rounded value.
  v = np.array([[[0, 383, 511], [32768, 65535, 257], [40000, 1000, 65280]]],
               dtype=">u2")
  raw = b"".join(b"\x00" + row.tobytes() for row in v)
  (tmp_path / "rgb16.png").write_bytes(
      _png_bytes(3, 1, depth=16, color_type=2, raw=raw))
  out = files.load_image(tmp_path / "rgb16.png")
  assert out.shape == (1, 3, 3)
  assert np.abs(out.astype(int) - _scale16(v)).max() <= 1
  assert out[0, 1, 1] == 255 and out[0, 0, 0] == 0
  assert out[0, 1, 0] in (127, 128)  # mid-grey stays mid-grey


def test_float_tiff(tmp_path):
  Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32)).save(
      tmp_path / "f.tif")
  np.testing.assert_array_equal(files.load_image(tmp_path / "f.tif")[0, :, 0],
                                [0, 128, 255])
  Image.fromarray(np.array([[0.0, 2.0]], np.float32)).save(tmp_path / "g.tif")
  with pytest.raises(files.ImageLoadError, match=r"outside \[0, 1\]"):
    files.load_image(tmp_path / "g.tif")


def test_cmyk_jpeg(tmp_path):
  rgb = np.zeros((16, 16, 3), np.uint8)
  rgb[:, :8] = (200, 40, 30)
  rgb[:, 8:] = (20, 90, 220)
  Image.fromarray(rgb).convert("CMYK").save(tmp_path / "c.jpg", quality=95)
  assert _mode(tmp_path / "c.jpg") == "CMYK"
  out = files.load_image(tmp_path / "c.jpg")
  # Flat colour blocks survive JPEG within a few levels away from the seam.
  assert np.abs(out[:, :6].astype(int) - (200, 40, 30)).max() <= 6
  assert np.abs(out[:, 10:].astype(int) - (20, 90, 220)).max() <= 6


def test_exif_orientation_6_is_applied(tmp_path):
  stored = np.zeros((16, 32, 3), np.uint8)  # 32 wide, 16 high as stored
  stored[:8, :8] = 255  # white marker at the stored top-left
  exif = Image.Exif()
  exif[0x0112] = 6  # "rotate 90 CW to display"
  Image.fromarray(stored).save(tmp_path / "r.jpg", exif=exif, quality=95)
  out = files.load_image(tmp_path / "r.jpg")
  assert out.shape == (32, 16, 3)
  upright = np.rot90(stored, k=-1)  # clockwise: top-left goes to top-right
  assert upright[:8, -8:].min() == 255
  assert out[1:7, -7:-1].min() > 200  # the marker is at the top-right
  assert out[-8:, :8].max() < 50


# --- broken files ----------------------------------------------------------


def test_missing_directory_empty_and_text(tmp_path):
  with pytest.raises(files.ImageLoadError, match=r"nope.png'\) does not exist"):
    files.load_image(tmp_path / "nope.png")
  (tmp_path / "x.jpg").mkdir()
  with pytest.raises(files.ImageLoadError, match="x.jpg'\\) is a directory"):
    files.load_image(tmp_path / "x.jpg")
  (tmp_path / "zero.png").write_bytes(b"")
  with pytest.raises(files.ImageLoadError, match=r"is empty \(0 bytes\)"):
    files.load_image(tmp_path / "zero.png")
  (tmp_path / "text.png").write_text("hello, not an image")
  with pytest.raises(files.ImageLoadError,
                     match=r"text.png'\) is not an image file PIL can read "
                     r"\(it starts with b'hello"):
    files.load_image(tmp_path / "text.png")
  assert issubclass(files.ImageLoadError, ValueError)


@pytest.mark.parametrize("suffix", ["jpg", "png"])
@pytest.mark.parametrize("strict_off", [False, True])
def test_truncated_files(tmp_path, photo, monkeypatch, suffix, strict_off):
  big = np.kron(photo, np.ones((6, 6, 1), np.uint8))
  Image.fromarray(big).save(tmp_path / f"full.{suffix}")
  data = (tmp_path / f"full.{suffix}").read_bytes()
  (tmp_path / f"cut.{suffix}").write_bytes(data[:len(data) // 2])
  if strict_off:  # Someone else switched truncated loading on globally.
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
  with pytest.raises(files.ImageLoadError, match="is truncated or corrupt"):
    files.load_image(tmp_path / f"cut.{suffix}")
  assert ImageFile.LOAD_TRUNCATED_IMAGES is strict_off


def test_corrupt_png_data(tmp_path, photo):
  Image.fromarray(photo).save(tmp_path / "ok.png")
  data = bytearray((tmp_path / "ok.png").read_bytes())
  at = data.index(b"IDAT") + 20
  data[at] ^= 0xFF  # one flipped byte: the chunk's CRC no longer matches
  (tmp_path / "bad.png").write_bytes(bytes(data))
  with pytest.raises(files.ImageLoadError, match="is truncated or corrupt"):
    files.load_image(tmp_path / "bad.png")


def test_unconvertible_mode(tmp_path, photo, monkeypatch):
  Image.fromarray(photo).save(tmp_path / "a.png")

  def refuse(self, mode):
    raise ValueError(f"conversion from {self.mode} to {mode} not supported")

  monkeypatch.setattr(Image.Image, "convert", refuse)
  with pytest.raises(files.ImageLoadError,
                     match=r"has mode 'RGB', which PIL cannot convert to RGB"):
    files.load_image(tmp_path / "a.png")


# --- decompression bombs ---------------------------------------------------


def test_max_pixels_refuses_a_normal_image(tmp_path, photo):
  Image.fromarray(photo).save(tmp_path / "a.png")
  with pytest.raises(files.ImageLoadError,
                     match=r"decompression bomb: 10x12 = 120 pixels exceeds "
                     r"`max_pixels` \(=100\)"):
    files.load_image(tmp_path / "a.png", max_pixels=100)
  assert files.load_image(tmp_path / "a.png", max_pixels=120).shape == (12, 10, 3)


@pytest.mark.parametrize("side", [10_000, 100_000])
def test_huge_header_png_is_refused_before_decoding(tmp_path, side):
  # 1e8 pixels is past PIL's warning limit (our check answers); 1e10 is past
  # its error limit (PIL answers and we rewrap). Neither is decoded.
  (tmp_path / "bomb.png").write_bytes(_png_bytes(side, side, raw=b"\x00"))
  with pytest.raises(files.ImageLoadError, match="decompression bomb"):
    files.load_image(tmp_path / "bomb.png")


# --- listing ---------------------------------------------------------------


def test_list_images_folder_glob_and_file(tmp_path):
  for name in ["b.PNG", "a.jpg", "notes.txt", ".x.png.0a1b.tmp"]:
    (tmp_path / name).write_bytes(b"x")
  (tmp_path / "dir.jpg").mkdir()
  (tmp_path / "sub").mkdir()
  (tmp_path / "sub" / "c.png").write_bytes(b"x")
  names = [p.name for p in files.list_images(tmp_path)]
  assert names == ["a.jpg", "b.PNG", "dir.jpg"]
  rec = [p.name for p in files.list_images(tmp_path, recursive=True)]
  assert rec == ["a.jpg", "b.PNG", "dir.jpg", "c.png"]
  assert [p.name for p in files.list_images(tmp_path / "*.txt")] == ["notes.txt"]
  assert files.list_images(str(tmp_path / "a.jpg")) == [tmp_path / "a.jpg"]
  assert files.list_images(tmp_path / "*.gif") == []
  with pytest.raises(ValueError, match=r"`input` \('.*missing'\) is neither"):
    files.list_images(tmp_path / "missing")


# --- atomic writes ---------------------------------------------------------


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
  target = tmp_path / "out.bin"
  files.atomic_write(target, b"old")
  files.atomic_write(target, b"new contents")
  assert target.read_bytes() == b"new contents"
  assert os.listdir(tmp_path) == ["out.bin"]
  with pytest.raises(TypeError, match=r"`data` \(type=str\)"):
    files.atomic_write(target, "text")
  with pytest.raises(FileNotFoundError, match="does not exist"):
    files.atomic_write(tmp_path / "no" / "x.bin", b"x")


def test_atomic_write_failure_cleans_up(tmp_path, monkeypatch):
  target = tmp_path / "out.bin"
  target.write_bytes(b"old")

  def broken_replace(src, dst):
    raise OSError("disk on fire")

  monkeypatch.setattr(files.os, "replace", broken_replace)
  with pytest.raises(OSError, match="disk on fire"):
    files.atomic_write(target, b"new")
  assert os.listdir(tmp_path) == ["out.bin"]
  assert target.read_bytes() == b"old"


def test_save_png_failure_leaves_nothing(tmp_path):
  # A directory in the way makes os.replace fail after the data is written.
  (tmp_path / "x.png").mkdir()
  with pytest.raises(OSError):
    files.save_png(tmp_path / "x.png", np.zeros((2, 2, 3), np.uint8))
  assert os.listdir(tmp_path) == ["x.png"]
  assert (tmp_path / "x.png").is_dir()


def test_remove_temp_files(tmp_path):
  (tmp_path / ".a.png.1234.tmp").write_bytes(b"partial")
  (tmp_path / "a.png").write_bytes(b"done")
  assert files.remove_temp_files(tmp_path) == 1
  assert os.listdir(tmp_path) == ["a.png"]


def test_save_png_and_npz_round_trip(tmp_path, photo):
  files.save_png(tmp_path / "a.png", photo)
  np.testing.assert_array_equal(files.load_image(tmp_path / "a.png"), photo)
  files.save_png(tmp_path / "g.png", Image.fromarray(photo[..., 0]))
  assert _mode(tmp_path / "g.png") == "L"
  with pytest.raises(ValueError, match=r"`image` \(dtype=float64\)"):
    files.save_png(tmp_path / "f.png", photo / 255.0)
  with pytest.raises(ValueError, match=r"`image` \(shape=\(12, 10, 2\)\)"):
    files.save_png(tmp_path / "f.png", photo[..., :2])

  sr = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
  files.save_npz(tmp_path / "r.npz", sr=sr, target=np.int32(3), path=sr)
  with np.load(tmp_path / "r.npz", allow_pickle=False) as f:
    np.testing.assert_array_equal(f["sr"], sr)
    assert int(f["target"]) == 3 and "path" in f.files
  with pytest.raises(ValueError, match=r"`bad` \(dtype=object\)"):
    files.save_npz(tmp_path / "o.npz", bad=np.array([{}], dtype=object))
  with pytest.raises(ValueError, match="`arrays` is empty"):
    files.save_npz(tmp_path / "e.npz")
  assert sorted(os.listdir(tmp_path)) == ["a.png", "g.png", "r.npz"]


# --- the deprecated old name ------------------------------------------------

PUBLIC = ("DEFAULT_MAX_PIXELS", "IMAGE_SUFFIXES", "TEMP_SUFFIX",
          "ImageLoadError", "PathLike", "atomic_write", "list_images",
          "load_image", "remove_temp_files", "save_npz", "save_png")


def test_sr_jax_io_warns_and_gives_the_same_functions(monkeypatch):
  monkeypatch.delitem(sys.modules, "sr_jax.io", raising=False)
  if "io" in vars(sr_jax):  # (getattr would import it)
    monkeypatch.delattr(sr_jax, "io")
  with pytest.warns(DeprecationWarning,
                    match=r"sr_jax\.io is deprecated; import sr_jax\.files"):
    old = importlib.import_module("sr_jax.io")
  for name in PUBLIC:
    assert getattr(old, name) is getattr(files, name), name
  assert old._is_temp is files._is_temp  # pylint: disable=protected-access
  with pytest.raises(AttributeError, match="no attribute 'nope'"):
    old.nope  # pylint: disable=pointless-statement


def test_sr_jax_dot_io_still_resolves(monkeypatch):
  monkeypatch.delitem(sys.modules, "sr_jax.io", raising=False)
  if "io" in vars(sr_jax):  # (getattr would import it)
    monkeypatch.delattr(sr_jax, "io")
  with pytest.warns(DeprecationWarning, match=r"sr_jax\.io is deprecated"):
    assert sr_jax.io.load_image is files.load_image
