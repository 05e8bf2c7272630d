"""Panels: titled grids of tiles, the SR paper's figures as one picture.

`panel` mirrors Figure 3 of Li, Tian, Mueller, Chen (2017), "Beyond
saliency: understanding convolutional neural networks from saliency
prediction on layer-wise relevance propagation": input, image saliency, LRP,
SR, LRP on edges, SR on edges. As in the paper's figures, the prediction is
said once, in the heading, and each tile carries only its name.
`compare_models_panel` sets two models' SR maps side by side. Panels are
`PIL.Image.Image`s; `panel_png` gives one as PNG bytes (for notebooks).
"""

from __future__ import annotations

import io
from typing import Any, Optional, Sequence, Union

import jax
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from sr_jax import _deprecation
from sr_jax.classes import label
from sr_jax.maps import lrp_map
from sr_jax.viz.colormaps import heat, overlay_edges, plane, relevance_rgb

Label = Union[int, str, None]
# One cell of a grid: its caption lines and its picture (None: "n/a").
Cell = tuple[Sequence[str], Optional[np.ndarray]]
TILE_NAMES = ("input", "image saliency", "LRP", "SR", "LRP on edges",
              "SR on edges")
_BACKGROUND = (255, 255, 255)
_NA_GRAY = 220
_HEADING_SEPARATOR = "; "


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


def _grid(cells: Sequence[Sequence[Cell]], *, box: int,
          title: Union[str, Sequence[str], None]) -> Image.Image:
  """Rows of (caption lines, image or None) cells under optional heading
  lines (`title`: one line, or several)."""
  if box < 16:
    raise ValueError(f"`tile_size` (={box}) must be >= 16.")
  heading = [title] if isinstance(title, str) else list(title or ())
  heading = [line for line in heading if line]
  size = max(11, round(box / 17))
  title_size = round(size * 1.3)
  font, title_font = _font(size), _font(title_size)
  line_h = size + 4
  pad = max(4, size // 2)
  n_lines = max(len(lines) for row in cells for lines, _ in row)
  cell_h = n_lines * line_h + pad + box
  cols = max(len(row) for row in cells)
  top = (len(heading) * (title_size + 4) - 4 + 2 * pad) if heading else 0
  width = cols * box + (cols + 1) * pad
  canvas = Image.new("RGB", (width, top + len(cells) * (cell_h + pad) + pad),
                     _BACKGROUND)
  draw = ImageDraw.Draw(canvas)
  for i, line in enumerate(heading):
    draw.text((pad, pad + i * (title_size + 4)),
              _fit_text(draw, line, title_font, width - 2 * pad),
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


def grid(rows: Sequence[Sequence[Cell]], *, tile_size: int = 224,
         title: Union[str, Sequence[str], None] = None) -> Image.Image:
  """Rows of captioned square tiles under optional heading lines.

  Args:
    rows: rows of cells `(caption lines, uint8 HxWx3 picture or None)`; a
      None picture is drawn as a gray "n/a" tile.
    tile_size: the side of each square tile in pixels (>= 16).
    title: a heading line, or several, above the rows.

  Returns:
    An RGB `PIL.Image.Image`.

  Raises:
    ValueError: if `tile_size` < 16.

  Examples:
    >>> red = np.zeros((8, 8, 3), np.uint8); red[..., 0] = 255
    >>> grid([[(["red"], red), (["none"], None)]], tile_size=32).size
    (79, 62)
  """
  return _grid(rows, box=tile_size, title=title)


def caption_lines(
    result: Any,
    *,
    class_names: Optional[Sequence[str]] = None,
    true_label: Label = None,
) -> list[str]:
  """The prediction line, and the ground truth when known, for a caption.

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


def _checked_rgb(image: jax.typing.ArrayLike, name: str, *,
                shape: Optional[tuple[int, ...]] = None,
                hint: str = "") -> np.ndarray:
  """`image` as a uint8 HxWx3 array (of `shape` when given), else a
  ValueError naming it `name`, with `hint` appended to the message."""
  a = np.asarray(image)
  if shape is None:
    ok, want = a.ndim == 3 and a.shape[-1] == 3, "HxWx3"
  else:
    ok, want = a.shape == shape, "x".join(map(str, shape))
  if a.dtype != np.uint8 or not ok:
    raise ValueError(f"`{name}` (shape={a.shape}, dtype={a.dtype}) must be "
                     f"uint8 {want}{hint}.")
  return a


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
  image = _checked_rgb(fields["image"], "result.image")
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
    class_names: Optional[Sequence[str]] = None,
    true_label: Label = None,
    title: Optional[str] = None,
    tile_size: int = 224,
    labels: Optional[Sequence[str]] = None,
) -> Image.Image:
  """The SR paper's Figure 3 for one image, as one picture with named tiles.

  Tiles (2 rows x 3): input; image saliency ("n/a" when the result has none);
  LRP map (`relevance_rgb`, signed); SR map (`heat`); LRP on edges and SR on
  edges (`overlay_edges`, the LRP map being `maps.lrp_map`, the
  channel-summed |R| min-max scaled, the map the SSIM ratio uses). The
  heading says once what all tiles show: `title` (e.g. the file name), then
  the prediction with its probability ("target" instead of "pred" when the
  explained class is not the top one) and the ground truth when known. Each
  tile carries only its name. Small images are enlarged by a whole factor
  with nearest neighbour to fill `tile_size`; larger ones are shrunk to fit.

  Args:
    image: the input tile, uint8 HxWx3 with the maps' height and width
      (e.g. the crop the model saw); None shows `result.image`.
    result: an `SRResult` from `sr_jax.sr_map` (any object with its fields).
    class_names: class names indexed by class, e.g.
      `sr_jax.imagenet_classes()` (None: class indices only).
    true_label: the ground-truth class index (named with `class_names`) or a
      label string.
    title: the first heading line, e.g. the file name.
    tile_size: the side of each square tile in pixels.
    labels: deprecated name of `class_names`.

  Returns:
    An RGB `PIL.Image.Image`.

  Raises:
    ValueError: if `result` lacks a field, its maps' shapes disagree, `image`
      does not fit them, or `tile_size` < 16.

  Examples:
    >>> out = sr_jax.sr_map(model, params, image, arch="vgg16")  # doctest: +SKIP
    >>> panel(out.image, out, class_names=sr_jax.imagenet_classes()).save(
    ...     "p.png")  # doctest: +SKIP
  """
  class_names = _deprecation.renamed_keyword(
      class_names, labels, old="labels", new="class_names",
      where="sr_jax.viz.panel")
  f = _checked_maps(result)
  if image is not None:
    f["image"] = _checked_rgb(
        image, "image", shape=f["image"].shape,
        hint=" like the maps of `result`, or None for `result.image`")
  caption = caption_lines(result, class_names=class_names,
                          true_label=true_label)
  saliency = f["image_saliency"]
  lrp = lrp_map(f["relevance"])
  edges = np.asarray(f["edges"])
  arrays = (f["image"], None if saliency is None else heat(saliency),
            relevance_rgb(f["relevance"]), heat(f["sr"]),
            overlay_edges(lrp, edges), overlay_edges(f["sr"], edges))
  cells = [([name], array) for name, array in zip(TILE_NAMES, arrays)]
  heading = [title, _HEADING_SEPARATOR.join(caption)]
  return _grid([cells[:3], cells[3:]], box=tile_size, title=heading)


def panel_png(result: Any, **options) -> bytes:
  """`panel(None, result, **options)` as PNG bytes.

  For notebooks: an object whose `_repr_png_` returns these bytes displays
  as its panel.

  Args:
    result: an `SRResult` (see `panel`).
    **options: keyword options of `panel` (`class_names`, `true_label`,
      `title`, `tile_size`).

  Returns:
    The PNG file's bytes.

  Raises:
    ValueError: as `panel`.
  """
  buffer = io.BytesIO()
  panel(None, result, **options).save(buffer, format="PNG")
  return buffer.getvalue()


def compare_models_panel(
    images: Sequence[jax.typing.ArrayLike],
    results_a: Sequence[Any],
    results_b: Sequence[Any],
    *,
    names: tuple[str, str] = ("AlexNet", "VGG-16"),
    class_names: Any = None,
    true_labels: Optional[Sequence[Label]] = None,
    title: Optional[str] = None,
    tile_size: int = 160,
    class_names_a: Optional[Sequence[str]] = None,
    class_names_b: Optional[Sequence[str]] = None,
) -> Image.Image:
  """SR maps of two models side by side, one image per row.

  As the SR paper's model comparisons (AlexNet vs VGG-16, VGG-16 vs
  VGG-Face): columns input, SR of model A, SR of model B, each SR tile titled
  with its model's prediction and probability (the models may disagree, so
  each says its own).

  Args:
    images: the input images (uint8 HxWx3), one per row.
    results_a: `SRResult`s of model A, one per image.
    results_b: `SRResult`s of model B, one per image.
    names: the two models' names for the titles.
    class_names: the class names of both models (a sequence of strings), or
      a pair `(names_a, names_b)` when they differ (each None: indices
      only); None: indices only.
    true_labels: per image, a class index (named with model A's class
      names), a label string or None; shown under "input".
    title: a line above the grid.
    tile_size: the side of each square tile in pixels.
    class_names_a, class_names_b: deprecated: pass
      `class_names=(class_names_a, class_names_b)`.

  Returns:
    An RGB `PIL.Image.Image`.

  Raises:
    ValueError: if the lengths differ, `images` is empty, an image is not
      uint8 HxWx3, or the class names are a string or given twice.
  """
  if class_names_a is not None or class_names_b is not None:
    if class_names is not None:
      raise ValueError("Pass the class names once, as `class_names=`; "
                       "`class_names_a=` and `class_names_b=` are deprecated.")
    _deprecation.warn("`class_names_a=` and `class_names_b=` of "
                      "sr_jax.viz.compare_models_panel",
                      "`class_names=(class_names_a, class_names_b)`")
    class_names = (class_names_a, class_names_b)
  names_a, names_b = _class_name_pair(class_names)
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
    image = _checked_rgb(images[i], f"images[{i}]")
    truth = None if true_labels is None else true_labels[i]
    caption = [] if truth is None else [_truth_line(truth, names_a)]
    row = [(["input"] + caption, image)]
    for name, res, cls in ((names[0], results_a[i], names_a),
                           (names[1], results_b[i], names_b)):
      row.append(([f"SR ({name})"] + caption_lines(res, class_names=cls),
                  heat(plane(res.sr, f"sr of {name}"))))
    rows.append(row)
  return _grid(rows, box=tile_size, title=title)


def _class_name_pair(class_names: Any) -> tuple[Any, Any]:
  """`compare_models_panel`'s `class_names` as (model A's, model B's)."""
  if class_names is None:
    return None, None
  if isinstance(class_names, str):
    raise ValueError(
        f"`class_names` (={class_names!r}) must be a sequence of class "
        "names, or a pair of them (one per model), not a string.")
  if len(class_names) == 2 and all(
      c is None or (not isinstance(c, str) and isinstance(c, Sequence))
      for c in class_names):
    return tuple(class_names)
  return class_names, class_names
