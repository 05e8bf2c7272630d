"""Colormaps: maps and relevance as uint8 RGB arrays.

Piecewise-linear maps written out (no matplotlib): `heat` (black, red,
yellow, white) for [0, 1] maps, `relevance_rgb` (blue, white, red) for signed
relevance, and `overlay_edges`, a map in the red channel over an edge map as
in the SR paper's figures. Each returns a uint8 HxWx3 array.
"""

from __future__ import annotations

from typing import Optional

import jax
import numpy as np

from sr_jax.maps import as_map, normalize as minmax

# Piecewise-linear colormaps: anchor positions and RGB colours in [0, 1].
_HEAT = ((0.0, 1 / 3, 2 / 3, 1.0),
         ((0, 0, 0), (1, 0, 0), (1, 1, 0), (1, 1, 1)))  # black-red-yellow-white
_DIVERGING = ((-1.0, 0.0, 1.0),
              ((0, 0, 1), (1, 1, 1), (1, 0, 0)))  # blue-white-red


def _colormap(values: np.ndarray, cmap) -> np.ndarray:
  anchors, colors = cmap
  colors = np.asarray(colors, np.float64)
  rgb = np.stack([np.interp(values, anchors, colors[:, c]) for c in range(3)],
                 axis=-1)
  return np.round(rgb * 255).astype(np.uint8)


def plane(x: jax.typing.ArrayLike, name: str) -> np.ndarray:
  """`x` as a finite float HxW array; the errors name it as `name`."""
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

  Raises:
    ValueError: for a non-finite map, another shape or a bad `percentile`.
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

  Raises:
    ValueError: for a non-finite map or one that is not HxW.

  Examples:
    >>> heat(np.array([[0.0, 1 / 3, 1.0]])).tolist()
    [[[0, 0, 0], [255, 0, 0], [255, 255, 255]]]
  """
  m = plane(map, "map")
  m = minmax(m) if normalize else np.clip(m, 0, 1)
  return _colormap(m, _HEAT)


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
    map: HxW values in [0, 1] (clipped), e.g. an SR map or `maps.lrp_map`.
    edges: HxW booleans, e.g. from `canny`.
    edge_level: the brightness of edge pixels, in [0, 1] (1 = white).
    normalize: min-max scale the map to [0, 1] first.

  Returns:
    uint8 array (H, W, 3).

  Raises:
    ValueError: if the shapes differ, the map is not finite, or `edge_level`
      is outside [0, 1].
  """
  m = plane(map, "map")
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

