"""Procedural flower images whose class lives in two parts, with their masks.

In the spirit of an8Flower (Oramas, Wang & Tuytelaars, "Visual Explanation by
Interpretation: Improving Visual Feedback Capabilities of Deep Neural
Networks", ICLR 2019): synthetic images of a composite object where the parts
that decide the class are known, so an explanation can be scored against a
ground-truth mask.

Each image shows one flower (a stem, two leaves, 5 to 8 petals and a round
centre) at a random position, scale and rotation, over a textured background
with 3 to 6 distractor shapes (discs, squares, triangles, rings, bars) and
pixel noise. Every colour comes from one palette of nine hues, 40 degrees
apart on the colour wheel (`PALETTE`).

The class is decided by a pair of parts: for class `y` the centre's hue is
`y + 1` palette steps after the petals' hue, `centre = (petals + y + 1) % 9`,
with the petals' hue uniform. So the petals' colour alone and the centre's
colour alone are each uniform whatever the class; only the pair tells it
(an8Flower's "double" variant, `variant="double"`, the default). The stem,
leaves, distractors and background tints are drawn from the same palette
independently of the class. Hence the mean colour histogram of an image is
the same for every class, and a classifier on the global colour histogram
stays at chance (see `tests/test_synthetic.py`). The mask marks the petals
and the centre.

`variant="single"` decides the class by one part: the centre's hue is the
class, `centre = y`, and the petals' hue is uniform and independent of it, as
in an8Flower's "single" variant. The mask then marks the centre alone. (The
centre's colour shows in the global histogram, so a colour-histogram
classifier does better than chance on this variant.) Both variants draw the
same random numbers, so sample `i` differs between them only in the centre's
colour and the mask.

Sample `i` of seed `s` depends only on `(s, i)` (its own
`numpy.random.Generator`), and rendering is elementwise arithmetic, so a batch
equals its samples generated one by one, in any order or process.

Examples:
  >>> image, label, mask = sample(0, 7)
  >>> image.shape, image.dtype, mask.shape, CLASS_NAMES[label]
  ((64, 64, 3), dtype('uint8'), (64, 64), 'hue+...')
"""

from __future__ import annotations

import colorsys
import os
from typing import Optional, Union

import numpy as np

NUM_HUES = 9
NUM_CLASSES = NUM_HUES - 1
HUE_STEP = 360 // NUM_HUES
HUE_NAMES = ("red", "orange", "lime", "green", "spring", "azure", "blue",
             "violet", "pink")
# Saturated palette colours in 0..255 RGB (HSV with S=0.85, V=0.92).
PALETTE = np.array(
    [colorsys.hsv_to_rgb(k / NUM_HUES, 0.85, 0.92) for k in range(NUM_HUES)],
    np.float32) * np.float32(255.0)
# Class y: the centre's hue is 40*(y+1) degrees after the petals' hue.
CLASS_NAMES = tuple(f"hue+{HUE_STEP * (y + 1)}" for y in range(NUM_CLASSES))
# The variants, and the parts that decide the class (and make the mask).
VARIANTS = {"double": ("petals", "centre"), "single": ("centre",)}
# Class y of the "single" variant: the centre has hue y.
SINGLE_CLASS_NAMES = tuple(f"centre {HUE_NAMES[y]}" for y in range(NUM_CLASSES))

DEFAULT_SIZE = 64
TRAIN_SEED = 0   # training images
EVAL_SEED = 1    # held-out test images: never tune anything on these
SAMPLE_SEED = 2  # demo images (README, docs)
# The explanation evaluation's held-out images (`sr_jax.evaluation`): no
# training run, test accuracy or setting was ever looked at on this seed.
EVALUATION_SEED = 1000

# Difficulty, in pixels at 64x64 (scaled with the image size).
HEAD_RADIUS = (11.0, 16.0)        # flower head: centre to petal tip
CENTRE_FRACTION = (0.36, 0.46)    # centre radius / head radius
DISTRACTOR_RADIUS = (2.5, 6.5)
NUM_DISTRACTORS = (2, 5)          # inclusive
NOISE_STD = (2.0, 7.0)            # per-image std of the pixel noise
MAX_PETALS = 8
MAX_DISTRACTORS = NUM_DISTRACTORS[1]
_CANDIDATES = 16  # distractor positions tried per image
DISC, SQUARE, TRIANGLE, RING, BAR = range(5)


def _check(seed: int, index: int, size: int, index_name: str) -> None:
  if not isinstance(seed, (int, np.integer)) or seed < 0:
    raise ValueError(f"`seed` (={seed!r}) must be a non-negative integer.")
  if not isinstance(index, (int, np.integer)) or index < 0:
    raise ValueError(
        f"`{index_name}` (={index!r}) must be a non-negative integer.")
  if not isinstance(size, (int, np.integer)) or not 32 <= size <= 256:
    raise ValueError(f"`size` (={size!r}) must be an integer in [32, 256].")


def _check_variant(variant: str) -> None:
  if variant not in VARIANTS:
    raise ValueError(f"`variant` (={variant!r}) must be one of "
                     f"{', '.join(map(repr, VARIANTS))}.")


def class_names(variant: str = "double") -> tuple[str, ...]:
  """The class names of `variant` ("double": `CLASS_NAMES`)."""
  _check_variant(variant)
  return CLASS_NAMES if variant == "double" else SINGLE_CLASS_NAMES


def _centre_hue(petal, label, variant: str):
  """The centre's palette index: set by the pair, or by the class alone."""
  return (petal + label + 1) % NUM_HUES if variant == "double" else label


class _Uniforms:
  """Slices of one vector of uniform draws (one Generator call, not fifty)."""

  def __init__(self, rng: np.random.Generator, n: int = 512):
    self._u = rng.random(n)
    self._list = self._u.tolist()
    self._i = 0

  def __call__(self, lo: float, hi: float, n: Optional[int] = None):
    """A float in [lo, hi), or an array of `n` of them."""
    i, self._i = self._i, self._i + (n or 1)
    if n is None:
      return lo + (hi - lo) * self._list[i]
    return lo + (hi - lo) * self._u[i:i + n]

  def int(self, lo: int, hi: int, n: Optional[int] = None):
    """An int in [lo, hi), or an int64 array of `n` of them."""
    v = self(lo, hi, n)
    return int(v) if n is None else np.floor(v).astype(np.int64)


def _start(seed: int, index: int):
  """Sample (seed, index)'s Generator, draws, label and petal hue."""
  rng = np.random.default_rng((int(seed), int(index)))
  u = _Uniforms(rng)
  return rng, u, u.int(0, NUM_CLASSES), u.int(0, NUM_HUES)


def _draw(seed: int, index: int, size: int,
          variant: str = "double") -> dict[str, np.ndarray]:
  """The random choices for one image, from a Generator seeded by (seed, i)."""
  rng, u, label, petal_hue = _start(seed, index)
  s = size / 64.0
  p = {"label": label, "petal_hue": petal_hue,
       "centre_hue": _centre_hue(petal_hue, label, variant)}
  radius = u(*HEAD_RADIUS) * s
  margin = radius + 2.0 * s
  hx, hy = u(margin, size - margin), u(margin, size - margin)
  p.update(hx=hx, hy=hy, radius=radius, centre_r=radius * u(*CENTRE_FRACTION))
  n = u.int(5, MAX_PETALS + 1)
  ang = u(0.0, 2.0 * np.pi) + 2.0 * np.pi * np.arange(MAX_PETALS) / n
  p.update(petal_cos=np.cos(ang), petal_sin=np.sin(ang),
           petal_valid=np.arange(MAX_PETALS) < n,
           petal_a=0.46 * radius, petal_b=0.46 * radius * u(0.4, 0.6))
  # The stem points downwards give or take 60 degrees; leaves sit along it.
  stem_ang = np.pi / 2 + u(-np.pi / 3, np.pi / 3)
  stem_len = radius * u(1.3, 2.0)
  p.update(stem_cos=np.cos(stem_ang), stem_sin=np.sin(stem_ang),
           stem_len=stem_len, stem_w=u(0.9, 1.4) * s)
  leaf_t = u(0.45, 0.75) * stem_len
  leaf_ang = stem_ang + np.array([1.0, -1.0]) * u(0.6, 1.1, 2)
  leaf_a = radius * u(0.35, 0.5)
  p.update(leaf_a=leaf_a, leaf_b=leaf_a * u(0.3, 0.45),
           leaf_cos=np.cos(leaf_ang), leaf_sin=np.sin(leaf_ang),
           leaf_x=hx + leaf_t * np.cos(stem_ang) + leaf_a * np.cos(leaf_ang),
           leaf_y=hy + leaf_t * np.sin(stem_ang) + leaf_a * np.sin(leaf_ang))
  # Distractors: uniform positions that keep clear of the flower's head.
  m = MAX_DISTRACTORS
  dr = u(*DISTRACTOR_RADIUS, _CANDIDATES) * s
  dx, dy = u(0.0, size, _CANDIDATES), u(0.0, size, _CANDIDATES)
  clear = np.hypot(dx - hx, dy - hy) > radius + dr + 1.5 * s
  order = np.argsort(~clear, kind="stable")[:m]
  dang = u(0.0, 2.0 * np.pi, m)
  p.update(d_x=dx[order], d_y=dy[order], d_r=dr[order],
           d_cos=np.cos(dang), d_sin=np.sin(dang), d_kind=u.int(0, 5, m),
           d_valid=(np.arange(m) < u.int(NUM_DISTRACTORS[0], m + 1))
           & clear[order])
  # Colours: every part but the petals and centre is class-independent.
  p.update(stem_hue=u.int(0, NUM_HUES), leaf_hue=u.int(0, NUM_HUES),
           d_hue=u.int(0, NUM_HUES, m), bg_hue=u.int(0, NUM_HUES, 2),
           bg_sat=u(0.2, 0.5, 2), bg_grey=u(70.0, 170.0, 2),
           # brightness: stem, leaves, petals, centre, then distractors
           shade=u(0.85, 1.05, 4 + m),
           tex_coarse=u(0.0, 1.0, 25).reshape(5, 5),
           tex_fine=u(0.0, 1.0, 289).reshape(17, 17),
           noise_std=u(*NOISE_STD),
           noise=np.frombuffer(rng.bytes(size * size * 3), np.uint8).reshape(
               size, size, 3))  # uniform noise, scaled in `_render`
  return p


def _stack(draws: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
  """Per-image draws stacked along a leading batch axis (float32 floats)."""
  out = {}
  for k in draws[0]:
    v = np.stack([np.asarray(d[k]) for d in draws])
    out[k] = v.astype(np.float32) if v.dtype.kind == "f" else v
  return out


def _col(v: np.ndarray) -> np.ndarray:
  """(B,) or (B, K) → broadcastable against (B, [K,] H, W)."""
  return v[..., None, None]


def _alpha(d: np.ndarray) -> np.ndarray:
  """Anti-aliased coverage from an (approximate) signed distance in pixels."""
  return np.clip(np.float32(0.5) - d, 0.0, 1.0)


def _ellipse(x, y, cx, cy, cos, sin, a, b):
  u = (x - cx) * cos + (y - cy) * sin
  v = (y - cy) * cos - (x - cx) * sin
  return _alpha((np.sqrt((u / a) ** 2 + (v / b) ** 2) - 1.0) * b)


def _segment(x, y, cx, cy, cos, sin, length, width):
  """A bar from (cx, cy) to (cx, cy) + length * (cos, sin), half-width `width`."""
  t = np.clip((x - cx) * cos + (y - cy) * sin, 0.0, length)
  return _alpha(np.sqrt((x - cx - t * cos) ** 2 + (y - cy - t * sin) ** 2)
                - width)


def _shape(kind: int, x, y, cx, cy, r, cos, sin):
  """Coverage of a distractor of `kind`, centred at (cx, cy), size `r`."""
  u = (x - cx) * cos + (y - cy) * sin
  v = (y - cy) * cos - (x - cx) * sin
  if kind == DISC:
    return _alpha(np.sqrt(u * u + v * v) - r)
  if kind == SQUARE:
    return _alpha(np.maximum(np.abs(u), np.abs(v)) - 0.8 * r)
  if kind == TRIANGLE:  # equilateral, circumradius 1.2 r: three half-planes
    h = np.float32(np.sqrt(3.0) / 2.0)
    d = np.maximum(np.maximum(u, -0.5 * u + h * v), -0.5 * u - h * v)
    return _alpha(d - 0.6 * r)
  if kind == RING:
    return _alpha(np.abs(np.sqrt(u * u + v * v) - 0.8 * r) - 0.3 * r)
  return _alpha(np.sqrt(np.maximum(np.abs(u) - r, 0.0) ** 2 + v * v)
                - 0.25 * r)  # BAR


def _upsample(grid: np.ndarray, size: int) -> np.ndarray:
  """Bilinear upsampling of (B, g, g) to (B, size, size), elementwise only."""
  g = grid.shape[-1]
  pos = (np.arange(size, dtype=np.float32) + 0.5) * np.float32((g - 1) / size)
  i0 = np.minimum(pos.astype(np.int64), g - 2)
  w = (pos - i0)[None, :, None]
  rows = grid[:, i0, :] * (1 - w) + grid[:, i0 + 1, :] * w
  w = w.reshape(1, 1, size)
  return rows[:, :, i0] * (1 - w) + rows[:, :, i0 + 1] * w


class _Canvas:
  """Images being painted, flat and channels first: (3, B*H*W) float32.

  Each part is evaluated only in a square window around it (`window`) and
  painted only where it covers something, a few percent of the pixels.
  """

  def __init__(self, background: np.ndarray, windowed: bool = True):
    self.b, _, self.size, _ = background.shape  # (B, 3, H, W)
    self.windowed = windowed
    self.img = background.transpose(1, 0, 2, 3).reshape(3, -1)
    self.part = np.zeros(self.img.shape[1], np.float32)

  def window(self, cx: np.ndarray, cy: np.ndarray, reach: float):
    """Pixel-centre coordinates (B,1,w), (B,w,1) of windows around (cx, cy).

    Each window holds every pixel within `reach` (in pixels at 64x64) of
    (cx, cy), plus a margin for anti-aliasing, that lies inside the image:
    a window is moved inside the image rather than cut.
    """
    w = int(np.ceil(2.0 * reach * self.size / 64.0)) + 4
    w = self.size if not self.windowed else min(w, self.size)
    r = np.arange(w)
    ox = np.clip(np.floor(cx).astype(np.int64) - w // 2, 0, self.size - w)
    oy = np.clip(np.floor(cy).astype(np.int64) - w // 2, 0, self.size - w)
    xs, ys = ox[:, None] + r, oy[:, None] + r                        # (B, w)
    self._flat = ((np.arange(self.b)[:, None, None] * self.size
                   + ys[:, :, None]) * self.size + xs[:, None, :])
    half = np.float32(0.5)
    return (xs.astype(np.float32)[:, None, :] + half,
            ys.astype(np.float32)[:, :, None] + half)

  def paint(self, alpha, hue, shade, is_part=False):
    """Composites colour `PALETTE[hue] * shade` with coverage `alpha` (B,w,w)
    from the last `window` over the images."""
    nz = np.flatnonzero(alpha)
    idx, a = self._flat.reshape(-1)[nz], alpha.reshape(-1)[nz]
    colour = np.minimum(PALETTE[hue] * shade[:, None], 255.0)
    colour = colour[idx // (self.size * self.size)].T
    self.img[:, idx] += a * (colour - self.img[:, idx])
    self.part[idx] += a * (np.float32(is_part) - self.part[idx])

  def result(self, noise: np.ndarray):
    img = self.img.reshape(3, self.b, self.size, self.size)
    img = np.clip(np.rint(img.transpose(1, 2, 3, 0) + noise), 0, 255)
    return (img.astype(np.uint8),
            (self.part >= 0.5).reshape(self.b, self.size, self.size))


def _render(p: dict[str, np.ndarray], size: int, windowed: bool = True,
            parts: tuple[str, ...] = VARIANTS["double"]):
  """Images (B, H, W, 3) uint8 and masks (B, H, W) bool from stacked draws.

  The mask marks the `parts` (of "petals", "centre"). `windowed=False`
  evaluates every part over the whole image (slow; for tests): the result
  must be the same.
  """
  # Background: two desaturated palette tints mixed by a two-octave texture.
  tint = p["bg_grey"][..., None] + p["bg_sat"][..., None] * (
      PALETTE[p["bg_hue"]] - p["bg_grey"][..., None])            # (B, 2, 3)
  t = 0.7 * _upsample(p["tex_coarse"], size) + 0.3 * _upsample(
      p["tex_fine"], size)
  canvas = _Canvas(
      _col(tint[:, 0]) + t[:, None] * _col(tint[:, 1] - tint[:, 0]), windowed)
  # How far each part reaches from its window's centre: a distractor 1.25 r,
  # the stem R from its midpoint (R: head radius) plus its width, a leaf
  # 0.5 R, the petals R.
  r_max, d_max = HEAD_RADIUS[1], DISTRACTOR_RADIUS[1]
  for j in range(MAX_DISTRACTORS):
    x, y = canvas.window(p["d_x"][:, j], p["d_y"][:, j], 1.25 * d_max)
    alpha = np.zeros(np.broadcast_shapes(x.shape, y.shape), np.float32)
    for kind in range(5):
      sel = np.flatnonzero(p["d_valid"][:, j] & (p["d_kind"][:, j] == kind))
      if sel.size:
        a = [_col(p[k][sel, j]) for k in ("d_x", "d_y", "d_r", "d_cos", "d_sin")]
        alpha[sel] = _shape(kind, x[sel], y[sel], *a)
    canvas.paint(alpha, p["d_hue"][:, j], p["shade"][:, 4 + j])
  hx, hy = p["hx"], p["hy"]
  half_len = 0.5 * p["stem_len"]
  x, y = canvas.window(hx + half_len * p["stem_cos"],
                       hy + half_len * p["stem_sin"], r_max + 1.5)
  canvas.paint(_segment(x, y, _col(hx), _col(hy), _col(p["stem_cos"]),
                        _col(p["stem_sin"]), _col(p["stem_len"]),
                        _col(p["stem_w"])), p["stem_hue"], p["shade"][:, 0])
  for j in range(2):
    x, y = canvas.window(p["leaf_x"][:, j], p["leaf_y"][:, j],
                         0.5 * r_max)
    canvas.paint(_ellipse(x, y, *(_col(p[k][:, j]) for k in (
        "leaf_x", "leaf_y", "leaf_cos", "leaf_sin")), _col(p["leaf_a"]),
                          _col(p["leaf_b"])), p["leaf_hue"], p["shade"][:, 1])
  x, y = canvas.window(hx, hy, r_max)
  petals = np.zeros(np.broadcast_shapes(x.shape, y.shape), np.float32)
  dist = 0.54 * p["radius"]
  for j in range(MAX_PETALS):
    c, s = p["petal_cos"][:, j], p["petal_sin"][:, j]
    a = _ellipse(x, y, _col(hx + dist * c), _col(hy + dist * s), _col(c),
                 _col(s), _col(p["petal_a"]), _col(p["petal_b"]))
    petals = np.maximum(petals, a * _col(p["petal_valid"][:, j]))
  canvas.paint(petals, p["petal_hue"], p["shade"][:, 2], "petals" in parts)
  # The centre has a hard edge: anti-aliased pixels would mix the petals' and
  # the centre's colours, and the colour of that mix tells the class.
  centre = (x - _col(hx)) ** 2 + (y - _col(hy)) ** 2 <= _col(p["centre_r"]) ** 2
  canvas.paint(centre.astype(np.float32), p["centre_hue"], p["shade"][:, 3],
               "centre" in parts)
  # Uniform 0..255 noise has standard deviation 73.9.
  noise = (p["noise"].astype(np.float32) - np.float32(127.5)) * _col(
      p["noise_std"] / np.float32(73.9))[..., None]
  return canvas.result(noise)


def make_batch(
    seed: int, start: int, count: int, *, size: int = DEFAULT_SIZE,
    variant: str = "double",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Samples `start .. start + count - 1` of `seed`, rendered together.

  Args:
    seed: dataset seed (non-negative int); see `TRAIN_SEED`, `EVAL_SEED`.
    start: index of the first sample.
    count: number of samples (>= 1).
    size: image height and width in pixels.
    variant: "double" (the class is the hue step from the petals to the
      centre) or "single" (the class is the centre's hue); see `VARIANTS`.

  Returns:
    `(images, labels, masks)`: uint8 (count, size, size, 3), int32 (count,)
    in `range(NUM_CLASSES)`, and bool (count, size, size) marking the parts
    that decide the class: the petals and the centre ("double"), or the
    centre ("single").

  Examples:
    >>> images, labels, masks = make_batch(TRAIN_SEED, 0, 32)
    >>> images.shape, labels.dtype, masks.shape
    ((32, 64, 64, 3), dtype('int32'), (32, 64, 64))
  """
  _check(seed, start, size, "start")
  _check_variant(variant)
  if not isinstance(count, (int, np.integer)) or count < 1:
    raise ValueError(f"`count` (={count!r}) must be a positive integer.")
  p = _stack([_draw(seed, start + i, size, variant) for i in range(count)])
  images, masks = _render(p, size, parts=VARIANTS[variant])
  return images, p["label"].astype(np.int32), masks


def part_hues(seed: int, start: int, count: int, *,
              variant: str = "double") -> tuple[np.ndarray, np.ndarray]:
  """The petals' and the centre's palette indices of samples `start ...`.

  "double": each alone is uniform over the palette whatever the class; the
  class is `(centre - petals - 1) % NUM_HUES`. "single": the class is the
  centre's hue. Cheap: nothing is rendered.

  Returns:
    Two int32 arrays of shape (count,).
  """
  _check(seed, start, DEFAULT_SIZE, "start")
  _check_variant(variant)
  if not isinstance(count, (int, np.integer)) or count < 1:
    raise ValueError(f"`count` (={count!r}) must be a positive integer.")
  heads = [_start(seed, start + i)[2:] for i in range(count)]
  label, petal = np.array(heads, np.int32).reshape(count, 2).T
  return petal, _centre_hue(petal, label, variant)


def sample(
    seed: int, index: int, *, size: int = DEFAULT_SIZE,
    variant: str = "double",
) -> tuple[np.ndarray, int, np.ndarray]:
  """Sample `index` of `seed`: `(image uint8 HxWx3, label, mask bool HxW)`.

  Equal, bit for bit, to the same sample taken from any `make_batch` of the
  same `variant`.
  """
  _check(seed, index, size, "index")
  images, labels, masks = make_batch(seed, index, 1, size=size,
                                     variant=variant)
  return images[0], int(labels[0]), masks[0]


def sample_image(
    path: Union[str, os.PathLike, None] = None, *, index: int = 0,
    seed: int = SAMPLE_SEED, size: int = DEFAULT_SIZE,
) -> np.ndarray:
  """A demo image (from `SAMPLE_SEED`), optionally written as a PNG.

  Args:
    path: where to write the PNG (atomically); None writes nothing.
    index: which sample.
    seed: dataset seed.
    size: image height and width.

  Returns:
    The uint8 HxWx3 image.

  Examples:
    >>> sample_image("flower.png").shape  # doctest: +SKIP
    (64, 64, 3)
  """
  image, _, _ = sample(seed, index, size=size)
  if path is not None:
    from sr_jax import files  # pylint: disable=import-outside-toplevel
    files.save_png(path, image)
  return image
