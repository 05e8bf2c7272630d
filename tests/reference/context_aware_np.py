"""Plain NumPy (float64) context-aware saliency, written to be read, not fast.

It follows the steps in `sr_jax/saliency/context_aware.py` one by one with
independent code: resizing by explicitly built weight matrices (the
convention in `sr_jax/saliency/resize.py`), L*a*b* from `skimage.color`,
brute-force distances between every query and every candidate (direct
differences, no matrix-product trick, a full sort), and
`scipy.ndimage.distance_transform_edt`. Use it on small images only.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage
from skimage import color


def round_half_up(x: float) -> int:
  return int(math.floor(x + 0.5))


def _triangle(t):
  return np.maximum(0.0, 1.0 - np.abs(t))


def _keys_cubic(t, a=-0.5):
  t = np.abs(t)
  near = (a + 2) * t ** 3 - (a + 3) * t ** 2 + 1
  far = a * t ** 3 - 5 * a * t ** 2 + 8 * a * t - 4 * a
  return np.where(t < 1, near, np.where(t < 2, far, 0.0))


def resize_matrix(n_in: int, n_out: int, method: str) -> np.ndarray:
  """(n_out, n_in) weights: half-pixel centres, kernel stretched by n_in/n_out
  when shrinking, each row renormalized over the pixels inside the image."""
  kernel = {"linear": _triangle, "cubic": _keys_cubic}[method]
  stretch = max(n_in / n_out, 1.0)
  w = np.zeros((n_out, n_in))
  for o in range(n_out):
    centre = (o + 0.5) * n_in / n_out - 0.5
    for i in range(n_in):
      w[o, i] = kernel((centre - i) / stretch)
    w[o] /= w[o].sum()
  return w


def resize(image: np.ndarray, shape, method: str) -> np.ndarray:
  """HxWxC (or HxW) float64 image to `shape` with `resize_matrix` per axis."""
  if tuple(image.shape[:2]) == tuple(shape):
    return image
  rows = resize_matrix(image.shape[0], shape[0], method)
  cols = resize_matrix(image.shape[1], shape[1], method)
  return np.einsum("oh,hw...,pw->op...", rows, image, cols)


def scaled(shape, factor):
  return tuple(max(1, round_half_up(n * factor)) for n in shape)


def features(image: np.ndarray) -> np.ndarray:
  """Lab for 3 channels, then every plane min-max normalized (constant: 0)."""
  if image.shape[2] == 3:
    image = color.rgb2lab(image)
  out = np.zeros_like(image)
  for ch in range(image.shape[2]):
    plane = image[..., ch]
    span = plane.max() - plane.min()
    if span > 0:
      out[..., ch] = (plane - plane.min()) / span
  return out


def patch_at(image: np.ndarray, y: int, x: int, h: int) -> np.ndarray:
  return image[y - h:y + h + 1, x - h:x + h + 1].ravel()


def single_scale(feats: np.ndarray, working, r, h, *, pyramid,
                 min_pyramid_scale, c, k, border, step=None,
                 reference_area=49.0) -> np.ndarray:
  """S_r at the size of the scale-r image (steps 3-5), by brute force."""
  step = h if step is None else step
  shape = scaled(working, r)
  image = resize(feats, shape, "linear")
  side = max(shape)
  cand_vecs, cand_pos = [], []
  for s in pyramid:
    if r * s < min_pyramid_scale - 1e-9:
      continue
    level_shape = shape if s == 1 else scaled(working, r * s)
    level = image if s == 1 else resize(feats, level_shape, "cubic")
    for y in range(h, level_shape[0] - h, step):
      for x in range(h, level_shape[1] - h, step):
        cand_vecs.append(patch_at(level, y, x, h))
        y_q = (y + 0.5) * shape[0] / level_shape[0] - 0.5
        x_q = (x + 0.5) * shape[1] / level_shape[1] - 0.5
        cand_pos.append((y_q / side, x_q / side))
  cand_vecs, cand_pos = np.array(cand_vecs), np.array(cand_pos)
  if k > len(cand_vecs):
    raise ValueError(f"k={k} > {len(cand_vecs)} candidates at scale {r}")

  if border == "edge":
    image = np.pad(image, ((h, h), (h, h), (0, 0)), mode="edge")
    offset, rows, cols = h, range(shape[0]), range(shape[1])
  else:
    offset, rows, cols = 0, range(h, shape[0] - h), range(h, shape[1] - h)
  out = np.zeros(shape)
  for y in rows:
    queries = np.array([patch_at(image, y + offset, x + offset, h)
                        for x in cols])
    q_pos = np.array([(y / side, x / side) for x in cols])
    d_colour = np.sqrt(((queries[:, None] - cand_vecs[None]) ** 2).sum(-1))
    d_pos = np.sqrt(((q_pos[:, None] - cand_pos[None]) ** 2).sum(-1))
    d = np.sort(d_colour / (1 + c * d_pos), axis=1)[:, :k]
    out[y, list(cols)] = 1 - np.exp(-d.mean(1) * reference_area
                                    / (2 * h + 1) ** 2)
  return out


def context_aware(image, *, max_side=250, scales=(1.0, 0.8, 0.5, 0.3),
                  half_sizes=(3, 2, 1, 1), pyramid=(1.0, 0.5, 0.25),
                  min_pyramid_scale=0.2, c=3.0, k=64, focus_threshold=0.8,
                  border="zero", output_size="input", candidate_steps=None,
                  reference_area=49.0) -> np.ndarray:
  """The whole algorithm on one HxW or HxWxC image, in float64."""
  image = np.asarray(image)
  x = image.astype(np.float64) / (255.0 if image.dtype == np.uint8 else 1.0)
  if x.ndim == 2:
    x = x[..., None]
  height, width = x.shape[:2]
  if max_side is None or max(height, width) == max_side:
    working = (height, width)
  else:
    working = scaled((height, width), max_side / max(height, width))
  feats = features(resize(x, working, "linear"))

  total = np.zeros(working)
  steps = candidate_steps or half_sizes
  for r, h, step in zip(scales, half_sizes, steps):
    s_r = single_scale(feats, working, r, h, pyramid=pyramid,
                       min_pyramid_scale=min_pyramid_scale, c=c, k=k,
                       border=border, step=step, reference_area=reference_area)
    total += resize(s_r[..., None], working, "linear")[..., 0]
  sal = total / len(scales)

  foci = sal >= focus_threshold * sal.max()
  dist = ndimage.distance_transform_edt(~foci)
  if dist.max() > 0:
    dist = dist / dist.max()
  sal = sal * (1 - dist)
  if output_size == "input":
    sal = resize(sal[..., None], (height, width), "linear")[..., 0]
  return np.clip(sal, 0.0, 1.0)
