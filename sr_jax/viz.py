"""Pictures of explanations: colormaps, Canny edge overlays and titled panels.

PIL and scikit-image are used only here, at the edge. Colormaps return uint8
HxWx3 arrays; panels return `PIL.Image.Image`. The panel mirrors Figure 3 of
Li, Tian, Mueller, Chen (2017), "Beyond saliency: understanding convolutional
neural networks from saliency prediction on layer-wise relevance
propagation": input, image saliency, LRP, SR, LRP on edges, SR on edges.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import jax
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from skimage import color, feature, util

from sr_jax.classes import label
from sr_jax.metrics import as_map, lrp_map, normalize as minmax

Label = Union[int, str, None]

# Piecewise-linear colormaps: anchor positions and RGB colours in [0, 1].
_HEAT = ((0.0, 1 / 3, 2 / 3, 1.0),
         ((0, 0, 0), (1, 0, 0), (1, 1, 0), (1, 1, 1)))  # black-red-yellow-white
_DIVERGING = ((-1.0, 0.0, 1.0),
              ((0, 0, 1), (1, 1, 1), (1, 0, 0)))  # blue-white-red
_BACKGROUND = (255, 255, 255)
_NA_GRAY = 220


def _colormap(values: np.ndarray, cmap) -> np.ndarray:
  anchors, colors = cmap
  colors = np.asarray(colors, np.float64)
  rgb = np.stack([np.interp(values, anchors, colors[:, c]) for c in range(3)],
                 axis=-1)
  return np.round(rgb * 255).astype(np.uint8)


def _plane(x: jax.typing.ArrayLike, name: str) -> np.ndarray:
  m = as_map(x, name)
  if m.ndim != 2:
    raise ValueError(f"`{name}` (shape={m.shape}) must be HxW.")
  return m


def relevance_rgb(
    relevance: jax.typing.ArrayLike,
    *,
    percentile: Optional[float] = None,
) -> np.ndarray:
  """Signed relevance as colours: red positive, blue negative, white zero.

  The scale is symmetric: +s is pure red and -s pure blue, where s is the
  largest |R| (or its `percentile`-th percentile, values beyond are clipped).
  A map that is zero everywhere is white.

  Args:
    relevance: HxW, or HxWxC (summed over channels first).
    percentile: None for s = max |R|, or a number in (0, 100].

  Returns:
    uint8 array (H, W, 3).
  """
  r = as_map(relevance, "relevance")
  if r.ndim == 3:
    r = r.sum(axis=-1)
  if r.ndim != 2:
    raise ValueError(f"`relevance` (shape={r.shape}) must be HxW or HxWxC.")
  if percentile is None:
    scale = np.abs(r).max()
  elif 0 < percentile <= 100:
    scale = np.percentile(np.abs(r), percentile)
  else:
    raise ValueError(f"`percentile` (={percentile!r}) must be in (0, 100].")
  v = np.clip(r / scale, -1, 1) if scale > 0 else np.zeros_like(r)
  return _colormap(v, _DIVERGING)


def heat(
    map: jax.typing.ArrayLike,  # pylint: disable=redefined-builtin
    *,
    normalize: bool = False,
) -> np.ndarray:
  """A [0, 1] map as colours from black through red and yellow to white.

  Args:
    map: HxW values in [0, 1] (values outside are clipped).
    normalize: min-max scale the map to [0, 1] first (constant -> black).

  Returns:
    uint8 array (H, W, 3).
  """
  m = _plane(map, "map")
  m = minmax(m) if normalize else np.clip(m, 0, 1)
  return _colormap(m, _HEAT)


def canny(image: jax.typing.ArrayLike, sigma: float = 2.0) -> np.ndarray:
  """Canny edges of an image (`skimage.feature.canny` on its grayscale).

  Args:
    image: uint8 or float ([0, 1]) image, HxW, HxWx3 or HxWx4 (alpha ignored).
    sigma: the Gaussian smoothing before the gradient; larger = fewer edges.

  Returns:
    bool array (H, W), True on edges.
  """
  x = np.asarray(image)
  if x.ndim == 3 and x.shape[-1] in (3, 4):
    gray = color.rgb2gray(x[..., :3])
  elif x.ndim == 2:
    gray = util.img_as_float(x)
  else:
    raise ValueError(f"`image` (shape={x.shape}) must be HxW, HxWx3 or HxWx4.")
  if not sigma > 0:
    raise ValueError(f"`sigma` (={sigma!r}) must be > 0.")
  return feature.canny(gray, sigma=sigma)


def overlay_edges(
    map: jax.typing.ArrayLike,  # pylint: disable=redefined-builtin
    edges: jax.typing.ArrayLike,
    *,
    edge_level: float = 0.75,
    normalize: bool = False,
) -> np.ndarray:
  """A map in the red channel over an edge map, as in the SR paper's figures.

  Off the edges a pixel is (map, 0, 0): black to red. On an edge it is
  (max(map, edge_level), edge_level, edge_level): gray where the map is low,
  pink where it is high.

  Args:
    map: HxW values in [0, 1] (clipped), e.g. an SR map or `metrics.lrp_map`.
    edges: HxW booleans, e.g. from `canny`.
    edge_level: the brightness of edge pixels, in [0, 1] (1 = white).
    normalize: min-max scale the map to [0, 1] first.

  Returns:
    uint8 array (H, W, 3).
  """
  m = _plane(map, "map")
  m = minmax(m) if normalize else np.clip(m, 0, 1)
  e = np.asarray(edges)
  if e.shape != m.shape:
    raise ValueError(
        f"`edges` (shape={e.shape}) must have the shape of `map` "
        f"(={m.shape}).")
  if not 0 <= edge_level <= 1:
    raise ValueError(f"`edge_level` (={edge_level!r}) must be in [0, 1].")
  e = e.astype(bool)
  gray = np.where(e, edge_level, 0.0)
  rgb = np.stack([np.maximum(m, gray), gray, gray], axis=-1)
  return np.round(rgb * 255).astype(np.uint8)


def _font(size: int) -> ImageFont.ImageFont:
  return ImageFont.load_default(size=size)


def _fit_text(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
  if draw.textlength(text, font=font) <= width:
    return text
  while text and draw.textlength(text + "...", font=font) > width:
    text = text[:-1]
  return text + "..."


def _tile(array: np.ndarray, box: int) -> Image.Image:
  """`array` enlarged by a whole factor (nearest) or shrunk to fit `box`."""
  h, w = array.shape[:2]
  im = Image.fromarray(array)
  k = box // max(h, w)
  if k >= 1:
    im = im.resize((w * k, h * k), Image.NEAREST)
  else:
    im = im.resize((max(1, round(w * box / max(h, w))),
                    max(1, round(h * box / max(h, w)))), Image.BILINEAR)
  canvas = Image.new("RGB", (box, box), _BACKGROUND)
  canvas.paste(im, ((box - im.width) // 2, (box - im.height) // 2))
  return canvas


def _na_tile(box: int, font) -> Image.Image:
  canvas = Image.new("RGB", (box, box), (_NA_GRAY,) * 3)
  draw = ImageDraw.Draw(canvas)
  draw.text((box // 2, box // 2), "n/a", fill=(0, 0, 0), font=font, anchor="mm")
  return canvas


def _grid(cells: Sequence[Sequence[tuple[Sequence[str], Optional[np.ndarray]]]],
          *, box: int, title: Optional[str]) -> Image.Image:
  """Rows of (caption lines, image or None) cells under an optional title."""
  if box < 16:
    raise ValueError(f"`tile_size` (={box}) must be >= 16.")
  size = max(11, round(box / 17))
  font, title_font = _font(size), _font(round(size * 1.3))
  line_h = size + 4
  pad = max(4, size // 2)
  n_lines = max(len(lines) for row in cells for lines, _ in row)
  cell_h = n_lines * line_h + pad + box
  cols = max(len(row) for row in cells)
  top = (round(size * 1.3) + 2 * pad) if title else 0
  width = cols * box + (cols + 1) * pad
  canvas = Image.new("RGB", (width, top + len(cells) * (cell_h + pad) + pad),
                     _BACKGROUND)
  draw = ImageDraw.Draw(canvas)
  if title:
    draw.text((pad, pad), _fit_text(draw, title, title_font, width - 2 * pad),
              fill=(0, 0, 0), font=title_font)
  for r, row in enumerate(cells):
    for c, (lines, array) in enumerate(row):
      x, y = pad + c * (box + pad), top + pad + r * (cell_h + pad)
      for i, line in enumerate(lines):
        draw.text((x, y + i * line_h), _fit_text(draw, line, font, box),
                  fill=(0, 0, 0), font=font)
      tile = _na_tile(box, font) if array is None else _tile(array, box)
      canvas.paste(tile, (x, y + n_lines * line_h + pad // 2))
  return canvas


def caption_lines(
    result: Any,
    *,
    class_names: Optional[Sequence[str]] = None,
    true_label: Label = None,
) -> list[str]:
  """The prediction line, and the ground truth when known, for a tile title.

  Args:
    result: an object with `logits`, `target` and `probability` (an
      `SRResult`).
    class_names: names indexed by class; None shows indices only.
    true_label: the true class index (named with `class_names`), a label
      string, or None.

  Returns:
    `["pred: 282 tiger cat (0.91)", "true: 281 tabby"]`; the first line says
    `target:` instead of `pred:` when the explained class is not the top one.
  """
  target = int(result.target)
  top = int(np.argmax(np.asarray(result.logits)))
  kind = "pred" if target == top else "target"
  lines = [f"{kind}: {label(target, class_names)} "
           f"({float(result.probability):.2f})"]
  if true_label is not None:
    lines.append(_truth_line(true_label, class_names))
  return lines


def _truth_line(value: Label, class_names: Optional[Sequence[str]]) -> str:
  if isinstance(value, (int, np.integer)):
    value = label(int(value), class_names)
  return f"true: {value}"


def _checked_maps(result: Any) -> dict[str, Any]:
  """The result's pictures as arrays, with their shapes checked."""
  fields = {}
  for name in ("image", "logits", "target", "probability", "relevance", "sr",
               "image_saliency", "edges"):
    if not hasattr(result, name):
      raise ValueError(
          f"`result` (type={type(result).__name__}) has no field `{name}`; "
          "pass an `SRResult` from `sr_jax.sr_map`.")
    fields[name] = getattr(result, name)
  image = np.asarray(fields["image"])
  if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
    raise ValueError(
        f"`result.image` (shape={image.shape}, dtype={image.dtype}) must be "
        "uint8 HxWx3.")
  hw = image.shape[:2]
  for name in ("relevance", "sr", "image_saliency", "edges"):
    if fields[name] is None and name == "image_saliency":
      continue
    shape = np.shape(fields[name])
    if shape[:2] != hw:
      raise ValueError(
          f"`result.{name}` (shape={shape}) must be {hw[0]}x{hw[1]} like "
          "`result.image`.")
  fields["image"] = image
  return fields


def panel(
    image: Optional[jax.typing.ArrayLike],
    result: Any,
    *,
    labels: Optional[Sequence[str]] = None,
    true_label: Label = None,
    title: Optional[str] = None,
    tile_size: int = 224,
) -> Image.Image:
  """The SR paper's Figure 3 for one image, as one picture with titled tiles.

  Tiles (2 rows x 3): input; image saliency ("n/a" when the result has none);
  LRP map (`relevance_rgb`, signed); SR map (`heat`); LRP on edges and SR on
  edges (`overlay_edges`, the LRP map being `metrics.lrp_map`, the
  channel-summed |R| min-max scaled, the map the SSIM ratio uses). Each tile's
  title carries the prediction with its probability ("target" instead of
  "pred" when the explained class is not the top one) and the ground truth
  when known. Small images are enlarged by a whole factor with nearest
  neighbour to fill `tile_size`; larger ones are shrunk to fit.

  Args:
    image: the input tile, uint8 HxWx3 with the maps' height and width
      (e.g. the crop the model saw); None shows `result.image`.
    result: an `SRResult` from `sr_jax.sr_map` (any object with its fields).
    labels: class names indexed by class, e.g. `sr_jax.imagenet_classes()`
      (None: class indices only).
    true_label: the ground-truth class index (named with `labels`) or a
      label string.
    title: a line above the tiles, e.g. the file name.
    tile_size: the side of each square tile in pixels.

  Returns:
    An RGB `PIL.Image.Image`.

  Examples:
    >>> out = sr_jax.sr_map(model, params, image, arch="vgg16")  # doctest: +SKIP
    >>> panel(out.image, out, labels=sr_jax.imagenet_classes()).save("p.png")  # doctest: +SKIP
  """
  f = _checked_maps(result)
  if image is not None:
    shown = np.asarray(image)
    if shown.dtype != np.uint8 or shown.shape != f["image"].shape:
      raise ValueError(
          f"`image` (shape={shown.shape}, dtype={shown.dtype}) must be uint8 "
          f"{'x'.join(map(str, f['image'].shape))} like the maps of "
          "`result`, or None for `result.image`.")
    f["image"] = shown
  caption = caption_lines(result, class_names=labels, true_label=true_label)
  saliency = f["image_saliency"]
  lrp = lrp_map(f["relevance"])
  edges = np.asarray(f["edges"])
  tiles = [
      ("input", f["image"]),
      ("image saliency", None if saliency is None else heat(saliency)),
      ("LRP", relevance_rgb(f["relevance"])),
      ("SR", heat(f["sr"])),
      ("LRP on edges", overlay_edges(lrp, edges)),
      ("SR on edges", overlay_edges(f["sr"], edges)),
  ]
  cells = [([name] + caption, array) for name, array in tiles]
  return _grid([cells[:3], cells[3:]], box=tile_size, title=title)


def compare_models_panel(
    images: Sequence[jax.typing.ArrayLike],
    results_a: Sequence[Any],
    results_b: Sequence[Any],
    *,
    names: tuple[str, str] = ("AlexNet", "VGG-16"),
    class_names_a: Optional[Sequence[str]] = None,
    class_names_b: Optional[Sequence[str]] = None,
    true_labels: Optional[Sequence[Label]] = None,
    title: Optional[str] = None,
    tile_size: int = 160,
) -> Image.Image:
  """SR maps of two models side by side, one image per row.

  As the SR paper's model comparisons (AlexNet vs VGG-16, VGG-16 vs
  VGG-Face): columns input, SR of model A, SR of model B, each SR tile titled
  with its model's prediction and probability.

  Args:
    images: the input images (uint8 HxWx3), one per row.
    results_a: `SRResult`s of model A, one per image.
    results_b: `SRResult`s of model B, one per image.
    names: the two models' names for the titles.
    class_names_a: model A's class names (None: indices only).
    class_names_b: model B's class names.
    true_labels: per image, a class index (named with `class_names_a`), a
      label string or None; shown under "input".
    title: a line above the grid.
    tile_size: the side of each square tile in pixels.

  Returns:
    An RGB `PIL.Image.Image`.
  """
  n = len(images)
  if len(results_a) != n or len(results_b) != n:
    raise ValueError(
        f"`results_a` (len={len(results_a)}) and `results_b` "
        f"(len={len(results_b)}) must have one result per image (={n}).")
  if true_labels is not None and len(true_labels) != n:
    raise ValueError(
        f"`true_labels` (len={len(true_labels)}) must have one entry per "
        f"image (={n}).")
  if n == 0:
    raise ValueError("`images` is empty; pass at least one image.")
  rows = []
  for i in range(n):
    image = np.asarray(images[i])
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
      raise ValueError(
          f"`images[{i}]` (shape={image.shape}, dtype={image.dtype}) must be "
          "uint8 HxWx3.")
    truth = None if true_labels is None else true_labels[i]
    caption = [] if truth is None else [_truth_line(truth, class_names_a)]
    row = [(["input"] + caption, image)]
    for name, res, cls in ((names[0], results_a[i], class_names_a),
                           (names[1], results_b[i], class_names_b)):
      row.append(([f"SR ({name})"] + caption_lines(res, class_names=cls),
                  heat(_plane(res.sr, f"sr of {name}"))))
    rows.append(row)
  return _grid(rows, box=tile_size, title=title)
