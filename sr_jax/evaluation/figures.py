"""The run's pictures, drawn with PIL (matplotlib is not a dependency).

* `scores_figure`: one panel per measure; in each, every variant's mean as a
  dot with its 95% interval as a bar, and the chance level (or the uniform
  noise reference) as a dashed line. Colours tell the kinds apart: method
  maps blue, SR maps red, meta-saliency green, smoothed purple, the random
  map grey.
* `gallery`: held-out images, their masks and every variant's map
  (`sr_jax.viz.heat`, each map min-max scaled), laid out with the grid of
  `sr_jax.viz`.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from sr_jax import viz
from sr_jax.evaluation.aggregate import MEASURES
from sr_jax.models.preprocess import normalize

COLOURS = {"map": (31, 90, 180), "sr": (200, 40, 40), "meta": (30, 140, 60),
           "smooth": (130, 60, 170), "random": (120, 120, 120)}
PANELS_PER_ROW = 6
_ROW, _PANEL_W, _PAD = 14, 150, 8


def _kind(name: str) -> str:
  if name == "random":
    return "random"
  prefix = name.partition(":")[0] if ":" in name else "map"
  return prefix if prefix in COLOURS else "map"


def _font(size: int) -> ImageFont.ImageFont:
  return ImageFont.load_default(size=size)


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width: int
          ) -> list[str]:
  lines, line = [], ""
  for word in text.split():
    trial = f"{line} {word}".strip()
    if draw.textlength(trial, font=font) <= width or not line:
      line = trial
    else:
      lines.append(line)
      line = word
  return lines + ([line] if line else [])


def _range(cells: Sequence[dict], chance: Optional[float]
           ) -> tuple[float, float]:
  lo = min(c["low"] for c in cells)
  hi = max(c["high"] for c in cells)
  if chance is not None:
    lo, hi = min(lo, chance), max(hi, chance)
  if hi - lo < 1e-9:
    lo, hi = lo - 0.5, hi + 0.5
  span = hi - lo
  return lo - 0.05 * span, hi + 0.05 * span


def _panel(draw: ImageDraw.ImageDraw, x0: int, y0: int, measure: Any,
           table: dict, names: Sequence[str], font, header: int) -> None:
  """One measure's panel at (x0, y0): header, dots and intervals, axis."""
  cells = {v: table[v][measure.key] for v in names
           if measure.key in table.get(v, {})}
  arrow = "(higher = better)" if measure.better == "higher" else \
      "(lower = better)"
  for i, line in enumerate(_wrap(draw, f"{measure.title} {arrow}", font,
                                 _PANEL_W - 4)[:3]):
    draw.text((x0 + 2, y0 + i * 12), line, fill=(0, 0, 0), font=font)
  top, bottom = y0 + header, y0 + header + len(names) * _ROW
  draw.rectangle((x0, top, x0 + _PANEL_W, bottom), outline=(170, 170, 170))
  if not cells:
    draw.text((x0 + _PANEL_W // 2, (top + bottom) // 2), "n/a",
              fill=(120, 120, 120), font=font, anchor="mm")
    return
  chance = next((c["chance"] for c in cells.values()
                 if c.get("chance") is not None), None)
  lo, hi = _range(list(cells.values()), chance)
  px = lambda v: x0 + 4 + (v - lo) / (hi - lo) * (_PANEL_W - 8)  # noqa: E731
  if chance is not None:
    for y in range(top, bottom, 6):
      draw.line((px(chance), y, px(chance), min(y + 3, bottom)),
                fill=(110, 110, 110))
  for r, v in enumerate(names):
    if v not in cells:
      continue
    c, y = cells[v], top + r * _ROW + _ROW // 2
    colour = COLOURS[_kind(v)]
    draw.line((px(c["low"]), y, px(c["high"]), y), fill=colour, width=2)
    e = px(c["estimate"])
    draw.ellipse((e - 3, y - 3, e + 3, y + 3), fill=colour)
  for value, anchor in ((lo, "la"), (hi, "ra")):
    draw.text((px(value), bottom + 2), f"{value:.3g}", fill=(0, 0, 0),
              font=font, anchor=anchor)


def scores_figure(table: dict[str, dict[str, Any]],
                  names: Sequence[str]) -> Image.Image:
  """Every measure's panel, `PANELS_PER_ROW` to a row, names at the left.

  Args:
    table: {variant: {measure key: {"estimate", "low", "high", "chance"}}}
      (`aggregate.scores`).
    names: the variants, in row order.

  Returns:
    An RGB `PIL.Image.Image`.
  """
  font = _font(11)
  measures = [m for m in MEASURES if any(m.key in table.get(v, {})
                                         for v in names)]
  probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
  name_w = int(max(probe.textlength(v, font=font) for v in names)) + 2 * _PAD
  cols = min(PANELS_PER_ROW, max(1, len(measures)))
  rows = max(1, math.ceil(len(measures) / cols))
  header, footer = 40, 18
  block = header + len(names) * _ROW + footer + _PAD
  width = name_w + cols * (_PANEL_W + _PAD) + _PAD
  canvas = Image.new("RGB", (width, rows * block + 2 * _PAD + 14),
                     (255, 255, 255))
  draw = ImageDraw.Draw(canvas)
  draw.text((_PAD, _PAD), "mean and 95% bootstrap interval; dashed: chance "
            "level (Gini, entropy: uniform noise)", fill=(0, 0, 0), font=font)
  x = width - _PAD - sum(24 + int(probe.textlength(k, font=font))
                         for k in COLOURS)
  for kind, colour in COLOURS.items():
    draw.ellipse((x, _PAD + 3, x + 7, _PAD + 10), fill=colour)
    draw.text((x + 10, _PAD), kind, fill=(0, 0, 0), font=font)
    x += 10 + int(probe.textlength(kind, font=font)) + 14
  for i, m in enumerate(measures):
    r, c = divmod(i, cols)
    y0 = _PAD + 14 + r * block
    if c == 0:
      for k, v in enumerate(names):
        draw.text((_PAD, y0 + header + k * _ROW + 1), v,
                  fill=COLOURS[_kind(v)], font=font)
    _panel(draw, name_w + c * (_PANEL_W + _PAD), y0, m, table, names, font,
           header)
  return canvas


def gallery(stage: Any, todo: Sequence[Any], rows: np.ndarray, *,
            planes: Optional[dict[str, np.ndarray]] = None,
            tile: int = 72) -> Image.Image:
  """Images `rows` of a stage, their masks, and every variant's map.

  Args:
    stage: the run's stage (its explainer and data).
    todo: the variants, one row each.
    rows: the images' indices.
    planes: precomputed {variant: (len(rows), H, W)}; missing ones are
      computed now.
    tile: the tile size in pixels.

  Returns:
    An RGB `PIL.Image.Image`: a column of names, then one column per image.
  """
  d, ex = stage.data, stage.explainer
  images, masks = d.images[rows], d.masks[rows]
  x = normalize(images, ex.arch)
  targets = (ex.probabilities(x).argmax(-1) if d.labels is None
             else d.labels[rows])
  planes = dict(planes or {})
  names = ["image", "mask"] + [v.name for v in todo]
  cells = [[([], im) for im in images],
           [([], viz.heat(m.astype(np.float64))) for m in masks]]
  for v in todo:
    if v.name not in planes:
      planes[v.name] = ex.maps(v, x, targets)["plane"]
    cells.append([([], viz.heat(p, normalize=True)) for p in planes[v.name]])
  grid = viz._grid(cells, box=tile, title=None)  # pylint: disable=protected-access
  font = _font(11)
  probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
  name_w = int(max(probe.textlength(n, font=font) for n in names)) + 2 * _PAD
  head = 18
  canvas = Image.new("RGB", (grid.width + name_w, grid.height + head),
                     (255, 255, 255))
  canvas.paste(grid, (name_w, head))
  draw = ImageDraw.Draw(canvas)
  step = (grid.height - 4) / len(names)
  for k, name in enumerate(names):
    colour = (0, 0, 0) if k < 2 else COLOURS[_kind(name)]
    draw.text((_PAD, head + 4 + k * step + step / 2), name, fill=colour,
              font=font, anchor="lm")
  for j, i in enumerate(rows):
    label = f"#{int(i)}" + ("" if d.labels is None
                            else f", class {int(d.labels[i])}")
    draw.text((name_w + 5 + j * (grid.width - 5) / len(rows), 3), label,
              fill=(0, 0, 0), font=font)
  return canvas
