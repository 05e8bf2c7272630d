"""Tests for sr_jax.viz: colormap values, Canny, overlays and panel layout."""

import types

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from sr_jax import viz


def _result(n=16, *, saliency=True, target=1, **fields):
  """A stand-in for sr_jax.sr.SRResult (the fields the panels read) where
  each tile gets its own flat colour, so the panel can be read back."""
  image = np.zeros((n, n, 3), np.uint8)
  image[..., 1] = 255  # green input
  relevance = np.full((n, n, 3), -0.5, np.float32)  # blue LRP tile
  edges = np.zeros((n, n), bool)
  edges[:, : n // 2] = True
  base = dict(
      image=image, logits=np.array([0.1, 2.0, 0.3]), target=target,
      probability=0.71, relevance=relevance, relevance_image=np.abs(relevance),
      sr=np.full((n, n), 2 / 3),  # yellow heat
      image_saliency=np.full((n, n), 1 / 3) if saliency else None,  # red heat
      edges=edges)
  return types.SimpleNamespace(**{**base, **fields})


def _bbox(picture, rgb):
  """(top, left, height, width) of all pixels of one colour, and their count."""
  hit = (np.asarray(picture) == rgb).all(-1)
  if not hit.any():
    return None, 0
  rows, cols = np.nonzero(hit)
  box = (rows.min(), cols.min(), rows.max() - rows.min() + 1,
         cols.max() - cols.min() + 1)
  return box, hit.sum()


# --- colormaps -------------------------------------------------------------


def test_relevance_rgb_red_white_blue():
  r = np.array([[2.0, -2.0, 0.0, 0.5, -1.5]])
  out = viz.relevance_rgb(r)
  assert out.dtype == np.uint8 and out.shape == (1, 5, 3)
  assert tuple(out[0, 0]) == (255, 0, 0)  # +max: red
  assert tuple(out[0, 1]) == (0, 0, 255)  # -max: blue
  assert tuple(out[0, 2]) == (255, 255, 255)  # zero: white
  assert tuple(out[0, 3]) == (255, 191, 191)  # +1/4: 255 * 3/4 = 191.25
  assert tuple(out[0, 4]) == (64, 64, 255)  # -3/4: 255 * 1/4 = 63.75


def test_relevance_rgb_sums_channels_and_percentile():
  r = np.zeros((1, 2, 3))
  r[0, 0] = (1.0, 1.0, -3.0)  # sum -1: the most negative, blue
  r[0, 1] = (0.25, 0.25, 0.0)  # sum +0.5 of scale 1
  out = viz.relevance_rgb(jnp.asarray(r, jnp.float32))
  assert tuple(out[0, 0]) == (0, 0, 255)
  assert tuple(out[0, 1]) == (255, 128, 128)  # 127.5 rounds half to even
  ramp = np.arange(101.0).reshape(1, 101)
  out = viz.relevance_rgb(ramp, percentile=50)  # scale 50, beyond clipped
  assert tuple(out[0, 100]) == (255, 0, 0) and tuple(out[0, 50]) == (255, 0, 0)
  assert tuple(out[0, 25]) == (255, 128, 128)
  assert (viz.relevance_rgb(np.zeros((3, 3))) == 255).all()
  with pytest.raises(ValueError, match=r"`percentile` \(=0\) must be in"):
    viz.relevance_rgb(ramp, percentile=0)
  with pytest.raises(ValueError, match="`relevance` contains 1 NaN"):
    viz.relevance_rgb(np.array([[np.nan, 1.0]]))


def test_heat_black_red_yellow_white():
  out = viz.heat(np.array([[0.0, 1 / 3, 2 / 3, 1.0, 0.2, 1.5, -1.0]]))
  want = [(0, 0, 0), (255, 0, 0), (255, 255, 0), (255, 255, 255),
          (153, 0, 0), (255, 255, 255), (0, 0, 0)]
  assert [tuple(p) for p in out[0]] == want
  norm = viz.heat(np.array([[2.0, 4.0]]), normalize=True)
  assert [tuple(p) for p in norm[0]] == [(0, 0, 0), (255, 255, 255)]
  with pytest.raises(ValueError, match=r"`map` \(shape=\(2, 2, 3\)\) must be HxW"):
    viz.heat(np.zeros((2, 2, 3)))


# --- edges -----------------------------------------------------------------


def test_canny_finds_the_border_of_a_square():
  gray = np.zeros((40, 40), np.uint8)
  gray[10:30, 10:30] = 255
  edges = viz.canny(gray, sigma=2.0)
  assert edges.dtype == bool and edges.shape == (40, 40)
  boundary = gray > 0
  boundary = boundary ^ ndimage.binary_erosion(boundary)
  dist = ndimage.distance_transform_edt(~boundary)
  assert edges.any() and dist[edges].max() <= 1.5  # only on the border
  for side in (edges[8:12, 12:28], edges[28:32, 12:28], edges[12:28, 8:12],
               edges[12:28, 28:32]):
    assert side.any(axis=0).sum() + side.any(axis=1).sum() >= 16  # each side
  rgb = np.repeat(gray[..., None], 3, -1)
  np.testing.assert_array_equal(viz.canny(rgb), edges)
  assert not viz.canny(np.full((20, 20, 3), 7, np.uint8)).any()
  with pytest.raises(ValueError, match=r"`sigma` \(=0\) must be > 0"):
    viz.canny(gray, sigma=0)


def test_overlay_edges_red_channel_carries_the_map(rng):
  m = rng.random((6, 7))
  edges = np.zeros((6, 7), bool)
  edges[2, :] = True
  out = viz.overlay_edges(m, edges)
  off = ~edges
  np.testing.assert_array_equal(out[off, 0], np.round(255 * m[off]))
  assert (out[off, 1:] == 0).all()
  np.testing.assert_array_equal(out[edges, 1], 191)  # 0.75 * 255 = 191.25
  np.testing.assert_array_equal(out[edges, 0],
                                np.round(255 * np.maximum(m[edges], 0.75)))
  white = viz.overlay_edges(m, edges, edge_level=1.0)
  assert (white[edges] == 255).all()
  with pytest.raises(ValueError, match=r"`edges` \(shape=\(6, 6\)\) must have"):
    viz.overlay_edges(m, edges[:, :6])


# --- panels ----------------------------------------------------------------


def test_caption_lines():
  names = ["cat", "dog", "fox"]
  assert viz.caption_lines(_result(), class_names=names, true_label=2) == [
      "pred: 1 dog (0.71)", "true: 2 fox"]
  assert viz.caption_lines(_result(target=0), true_label="a fox") == [
      "target: 0 (0.71)", "true: a fox"]


def test_panel_tiles_are_where_they_should_be():
  tile = 64
  picture = viz.panel(None, _result(), class_names=["a", "b", "c"], true_label=0,
                      title="x.png", tile_size=tile)
  assert isinstance(picture, Image.Image) and picture.mode == "RGB"
  assert picture.width >= 3 * tile and picture.height >= 2 * tile
  full = tile * tile
  (g_top, g_left, g_h, g_w), g_n = _bbox(picture, (0, 255, 0))  # input
  assert (g_h, g_w, g_n) == (tile, tile, full)  # 16 px enlarged 4x
  (s_top, s_left, _, _), s_n = _bbox(picture, (255, 0, 0))  # image saliency
  (l_top, l_left, _, _), l_n = _bbox(picture, (0, 0, 255))  # LRP (negative)
  (y_top, y_left, _, _), y_n = _bbox(picture, (255, 255, 0))  # SR
  assert s_n == l_n == y_n == full
  assert g_top == s_top == l_top and g_left < s_left < l_left  # first row
  assert y_top > g_top + tile and y_left == g_left  # second row, first column
  # Second row, columns 2 and 3: LRP on edges (a constant LRP map is 0, so
  # black off the edges) and SR on edges (2/3 red off the edges); both are
  # gray (191) on the edges, which are the left halves.
  pixels = np.asarray(picture)
  for left, off_edge in ((s_left, (0, 0, 0)), (l_left, (170, 0, 0))):
    region = pixels[y_top:y_top + tile, left:left + tile]
    assert (region[:, :tile // 2] == 191).all()
    assert (region[:, tile // 2:] == off_edge).all()


def test_panel_without_image_saliency_shows_na():
  tile = 48
  picture = viz.panel(None, _result(n=12, saliency=False), tile_size=tile)
  _, na = _bbox(picture, (220, 220, 220))
  assert na > tile * tile * 0.9  # the gray n/a tile, less its text
  _, red = _bbox(picture, (255, 0, 0))
  assert red == 0


def test_panel_rejects_mismatched_fields():
  bad = _result(sr=np.zeros((8, 8)))
  with pytest.raises(ValueError, match=r"`result.sr` \(shape=\(8, 8\)\) must "
                     r"be 16x16"):
    viz.panel(None, bad)
  with pytest.raises(ValueError, match=r"has no field `image`"):
    viz.panel(None, object())
  with pytest.raises(ValueError, match=r"`tile_size` \(=8\) must be >= 16"):
    viz.panel(None, _result(), tile_size=8)
  for image, shape, dtype in ((np.zeros((8, 8, 3), np.uint8), r"\(8, 8, 3\)",
                               "uint8"),
                              (np.zeros((16, 16, 3)), r"\(16, 16, 3\)",
                               "float64")):
    with pytest.raises(ValueError, match=rf"`image` \(shape={shape}, "
                       rf"dtype={dtype}\) must be uint8 16x16x3 like the maps"):
      viz.panel(image, _result())


def test_panel_shows_the_given_image():
  tile = 64
  magenta = np.zeros((16, 16, 3), np.uint8)
  magenta[..., 0] = magenta[..., 2] = 255
  picture = viz.panel(magenta, _result(), tile_size=tile)
  (_, _, h, w), n = _bbox(picture, (255, 0, 255))
  assert (h, w, n) == (tile, tile, tile * tile)
  _, green = _bbox(picture, (0, 255, 0))  # result.image is not shown
  assert green == 0


def test_compare_models_panel_layout():
  tile = 32
  a, b = _result(), _result(sr=np.full((16, 16), 1 / 3))
  images = [a.image, a.image]
  picture = viz.compare_models_panel(images, [a, a], [b, b],
                                     true_labels=["x", 1], tile_size=tile)
  _, g_n = _bbox(picture, (0, 255, 0))
  (y_top, y_left, _, _), y_n = _bbox(picture, (255, 255, 0))  # SR of model A
  (r_top, r_left, _, _), r_n = _bbox(picture, (255, 0, 0))  # SR of model B
  assert g_n == y_n == r_n == 2 * tile * tile  # two rows of each
  assert y_top == r_top and y_left < r_left
  with pytest.raises(ValueError, match=r"must have one result per image \(=2\)"):
    viz.compare_models_panel(images, [a], [b, b])


def test_compare_models_panel_takes_class_names(monkeypatch):
  drawn = _drawn_text(monkeypatch)
  a, b = _result(), _result(target=0)
  one = dict(class_names=["x", "y", "z"], tile_size=224)
  viz.compare_models_panel([a.image], [a], [b], **one)
  same = [t for t, _ in drawn]
  drawn.clear()
  viz.compare_models_panel([a.image], [a], [b],
                           class_names=(["p", "q", "r"], None), tile_size=224)
  pair = [t for t, _ in drawn]
  assert any(" y " in t for t in same) and any(" x " in t for t in same)
  assert any(" q " in t for t in pair) and not any(" x " in t for t in pair)
  drawn.clear()
  with pytest.warns(DeprecationWarning, match=r"`class_names_a=` and "
                    r"`class_names_b=` of sr_jax\.viz\.compare_models_panel "
                    r"is deprecated"):
    viz.compare_models_panel([a.image], [a], [b],
                             class_names_a=["p", "q", "r"], tile_size=224)
  assert [t for t, _ in drawn] == pair
  with pytest.raises(ValueError, match=r"once, as `class_names=`"):
    viz.compare_models_panel([a.image], [a], [b], class_names=["x"],
                             class_names_a=["x"])
  with pytest.raises(ValueError, match=r"not a string"):
    viz.compare_models_panel([a.image], [a], [b], class_names="xyz")


def _drawn_text(monkeypatch):
  """Records every string PIL draws, with its position."""
  from PIL import ImageDraw  # pylint: disable=import-outside-toplevel
  drawn, real = [], ImageDraw.ImageDraw.text

  def text(self, xy, content, *args, **kwargs):
    drawn.append((content, xy))
    return real(self, xy, content, *args, **kwargs)
  monkeypatch.setattr(ImageDraw.ImageDraw, "text", text)
  return drawn


def test_panel_says_the_prediction_once_in_the_heading(monkeypatch):
  drawn = _drawn_text(monkeypatch)
  tile = 224  # wide enough for the whole heading line
  picture = viz.panel(None, _result(), class_names=["a", "b", "c"],
                      true_label=0, title="x.png", tile_size=tile)
  texts = [t for t, _ in drawn]
  assert texts == ["x.png", "pred: 1 b (0.71); true: 0 a", "input",
                   "image saliency", "LRP", "SR", "LRP on edges",
                   "SR on edges"]
  # The heading is above every tile; each name is above its own tile.
  (g_top, _, _, _), _ = _bbox(picture, (0, 255, 0))
  heading_y = [xy[1] for t, xy in drawn[:2]]
  assert max(heading_y) < min(xy[1] for _, xy in drawn[2:]) < g_top
  # Without a title or truth the heading is the prediction alone.
  drawn.clear()
  viz.panel(None, _result(target=0), tile_size=tile)
  assert [t for t, _ in drawn][:2] == ["target: 0 (0.71)", "input"]


def test_panel_labels_is_a_deprecated_alias(monkeypatch):
  drawn = _drawn_text(monkeypatch)
  new = viz.panel(None, _result(), class_names=["a", "b", "c"], tile_size=224)
  with pytest.warns(DeprecationWarning, match=r"`labels=` .* `class_names=`"):
    old = viz.panel(None, _result(), labels=["a", "b", "c"], tile_size=224)
  np.testing.assert_array_equal(np.asarray(old), np.asarray(new))
  assert drawn[0][0] == "pred: 1 b (0.71)"
  with pytest.raises(ValueError, match=r"once, as `class_names=`"):
    viz.panel(None, _result(), labels=["a"], class_names=["a"])


def test_uint8_rgb_checks_speak_alike():
  float_image = np.zeros((16, 16, 3))
  with pytest.raises(ValueError, match=r"`images\[1\]` \(shape=\(16, 16, 3\), "
                     r"dtype=float64\) must be uint8 HxWx3\."):
    a = _result()
    viz.compare_models_panel([a.image, float_image], [a, a], [a, a])
  with pytest.raises(ValueError, match=r"`result.image` \(shape=\(16, 16\), "
                     r"dtype=uint8\) must be uint8 HxWx3\."):
    viz.panel(None, _result(image=np.zeros((16, 16), np.uint8)))


def test_panel_png_is_the_panel():
  import io  # pylint: disable=import-outside-toplevel
  data = viz.panel_png(_result(), class_names=["a", "b", "c"], tile_size=32)
  assert data[:8] == b"\x89PNG\r\n\x1a\n"
  back = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
  want = np.asarray(viz.panel(None, _result(), class_names=["a", "b", "c"],
                              tile_size=32))
  np.testing.assert_array_equal(back, want)


def test_canny_lives_in_image_ops():
  from sr_jax import image_ops  # pylint: disable=import-outside-toplevel
  from tests.test_imports import import_graph  # pylint: disable=import-outside-toplevel
  assert viz.canny is image_ops.canny
  graph = import_graph()
  assert not any(m.startswith("sr_jax.viz") for m in graph["sr_jax.image_ops"])
  assert "sr_jax.sr" not in set().union(
      *(deps for m, deps in graph.items() if m.startswith("sr_jax.viz")))


# --- show (matplotlib) -----------------------------------------------------


@pytest.fixture
def pyplot():
  matplotlib = pytest.importorskip("matplotlib")
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  yield plt
  plt.close("all")


def test_show_draws_the_panel_pixel_for_pixel(pyplot):
  ax = viz.show(_result(), class_names=["a", "b", "c"], tile_size=32)
  want = np.asarray(viz.panel(None, _result(), class_names=["a", "b", "c"],
                              tile_size=32))
  np.testing.assert_array_equal(np.asarray(ax.images[0].get_array()), want)
  height, width = want.shape[:2]
  size = np.round(ax.figure.get_size_inches() * ax.figure.dpi)  # float inches
  assert tuple(size) == (width, height)
  _, ax2 = pyplot.subplots()
  image = _result().image
  assert viz.show(image, ax=ax2) is ax2
  np.testing.assert_array_equal(np.asarray(ax2.images[0].get_array()), image)
  with pytest.raises(ValueError, match=r"colour a map first"):
    viz.show(np.zeros((4, 4)))
  with pytest.raises(ValueError, match=r"`tile_size` is an option of a "
                     r"result's panel"):
    viz.show(image, tile_size=32)


def test_show_without_matplotlib_says_how_to_install_it(monkeypatch):
  import sys  # pylint: disable=import-outside-toplevel
  monkeypatch.setitem(sys.modules, "matplotlib", None)
  monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
  with pytest.raises(ImportError, match=r"`pip install matplotlib`"):
    viz.show(_result())


def test_importing_viz_does_not_import_matplotlib():
  import subprocess  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel
  code = "import sys, sr_jax.viz; print('matplotlib' in sys.modules)"
  out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, timeout=120, check=True)
  assert out.stdout.strip() == "False"


def test_grid_layout_and_heading_lines():
  """Sizes written out from the layout rules: font 11 px, pad 5, caption
  line 15, heading line round(11 * 1.3) = 14 (+4 between lines)."""
  red = np.zeros((8, 8, 3), np.uint8)
  red[..., 0] = 255
  rows = [[(["red"], red), (["none"], None)]]
  plain = viz.grid(rows, tile_size=32)
  assert plain.size == (2 * 32 + 3 * 5, 5 + 15 + 5 + 32 + 5)
  (top, left, h, w), _ = _bbox(plain, (255, 0, 0))
  assert (top, left, h, w) == (5 + 15 + 2, 5, 32, 32)  # 8 px enlarged 4x
  one = viz.grid(rows, tile_size=32, title="a")
  two = viz.grid(rows, tile_size=32, title=["a", "b"])
  assert one.height == plain.height + 14 + 2 * 5
  assert two.height == one.height + 14 + 4
  assert _bbox(two, (255, 0, 0))[0][0] == top + 14 + 4 + 14 + 2 * 5
  with pytest.raises(ValueError, match=r"`tile_size` \(=8\) must be >= 16"):
    viz.grid(rows, tile_size=8)
