"""Class-model visualisation: the image a classifier finds most class-like.

Simonyan, Vedaldi & Zisserman, "Deep Inside Convolutional Networks:
Visualising Image Classification Models and Saliency Maps" (ICLR workshop
2014), §2: find the image I that maximises the unnormalized class score
minus an L2 penalty,

    I* = argmax_I  S_c(I) - l2 * ||I||^2,

by gradient ascent in the model's normalized input space, starting from the
zero image (the training set's mean image once de-normalized, as the paper
does, its inputs being mean-subtracted).

The paper's plain version is the default: no regulariser but the L2 term,
plain gradient ascent (`optax.sgd`). The regularisers of later code are
options, all off by default, as CS231n's network-visualisation notebook
(class visualisation: jitter, a blur every few steps, clamping to the valid
range, steps along the L2-normalized gradient) and Lucid's `optvis.transform`
(`jitter`, `normalize_gradient`) use them. For the demo model the plain
version stays near the mean image for classes 2 to 6 (ascent oscillates about
a kink of the piecewise-linear score there); a noise start with normalized
steps, jitter, blur and clipping gives a class model of every class
(`sr_jax.scripts.class_model`'s defaults; tests/test_interpret.py).

The steps run under `jit` as `lax.scan`s over chunks of steps; the Python
loop over chunks drives the progress bar.
"""

from __future__ import annotations

import functools
import math
import os
import pathlib
from typing import Any, NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sr_jax import maps
from sr_jax.archs import Preprocessing, get_arch, preprocessing_of
from sr_jax.core.models import as_function

# Steps per jitted `lax.scan` (one progress-bar update each).
CHUNK = 50
DEFAULT_LEARNING_RATE = 1.0
DEFAULT_L2 = 1e-3


class ClassModel(NamedTuple):
  """What `class_model` returns.

  Attributes:
    image: uint8 HxWxC, displayable: de-normalized with the preprocessing and
      clipped to 0..255, or min-max scaled to 0..255 without one.
    array: the optimised image in the model's normalized input space, HxWxC.
    scores: the class score S_c of each step's input (the shifted image when
      `jitter` is on), before that step's update; shape (steps,).
  """

  image: np.ndarray
  array: jax.Array
  scores: jax.Array


class _Config(NamedTuple):
  """The static (compile-time) part of a run."""

  jitter: int
  blur_every: int
  blur_sigma: float
  clip: bool
  normalize_grad: bool
  chunk: int


@functools.lru_cache(maxsize=16)
def _sgd(learning_rate: float) -> optax.GradientTransformation:
  """One `optax.sgd` per rate, so repeated calls reuse the compiled steps."""
  return optax.sgd(learning_rate)


def gaussian_blur(x: jax.Array, sigma: float) -> jax.Array:
  """Separable Gaussian blur over the H and W axes of an NHWC array.

  The kernel is truncated at `int(4 * sigma + 0.5)` pixels and the edges are
  mirrored, as `scipy.ndimage.gaussian_filter(mode="reflect")` does.
  """
  radius = int(4.0 * sigma + 0.5)
  taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
  taps = taps / taps.sum()
  for axis in (1, 2):
    n = x.shape[axis]
    pad = [(0, 0)] * x.ndim
    pad[axis] = (radius, radius)
    xp = jnp.pad(x, pad, mode="symmetric")
    x = sum(jnp.asarray(w, x.dtype) * jax.lax.slice_in_dim(xp, i, i + n,
                                                           axis=axis)
            for i, w in enumerate(taps))
  return x


def _step(f, tx, config: _Config, params, target, l2, steps, low, high,
          carry, _):
  """One ascent step on S_c(x) - l2 * ||x||^2; skipped once t >= steps."""

  def objective(x):
    score = f(params, x)[0, target]
    return score - l2 * jnp.sum(x * x), score

  def active(carry):
    x, opt_state, key, t = carry
    if config.jitter:
      key, sub = jax.random.split(key)
      dy, dx = jax.random.randint(sub, (2,), -config.jitter, config.jitter + 1)
      grad, score = jax.grad(objective, has_aux=True)(
          jnp.roll(x, (dy, dx), axis=(1, 2)))
      grad = jnp.roll(grad, (-dy, -dx), axis=(1, 2))
    else:
      grad, score = jax.grad(objective, has_aux=True)(x)
    if config.normalize_grad:
      norm = jnp.sqrt(jnp.sum(grad * grad))
      grad = grad / jnp.where(norm > 0, norm, jnp.ones_like(norm))
    updates, opt_state = tx.update(-grad, opt_state, x)  # optax minimises.
    x = optax.apply_updates(x, updates)
    if config.blur_every:
      x = jax.lax.cond((t + 1) % config.blur_every == 0,
                       lambda v: gaussian_blur(v, config.blur_sigma),
                       lambda v: v, x)
    if config.clip:
      x = jnp.clip(x, low, high)
    return (x, opt_state, key, t + 1), score

  def idle(carry):
    return carry, jnp.zeros((), carry[0].dtype)

  return jax.lax.cond(carry[3] < steps, active, idle, carry)


@functools.partial(jax.jit, static_argnames=("f", "tx", "config"))
def _chunk(f, tx, config: _Config, params, target, l2, steps, low, high,
           carry):
  body = functools.partial(_step, f, tx, config, params, target, l2, steps,
                           low, high)
  return jax.lax.scan(body, carry, None, length=config.chunk)


def _progress(total: int, enabled: bool):
  """The project's progress bar over `total` steps (off unless `enabled`)."""
  from sr_jax.runner.progress import progress  # pylint: disable=import-outside-toplevel
  return progress(total=total, desc="class model", unit="steps",
                  disable=not enabled)


def _is_int(value: Any) -> bool:
  return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_int(value: Any, name: str, low: int) -> None:
  if not _is_int(value) or value < low:
    raise ValueError(f"`{name}` (={value!r}) must be an integer >= {low}.")


def _check_shape(image_shape: Any) -> tuple[int, int, int]:
  if (not isinstance(image_shape, (tuple, list)) or len(image_shape) != 3
      or not all(_is_int(n) and n >= 1 for n in image_shape)):
    raise ValueError(
        f"`image_shape` (={image_shape!r}) must be (height, width, channels), "
        "three positive integers, e.g. (64, 64, 3).")
  return tuple(int(n) for n in image_shape)


def _preprocessing(preprocessing: Union[str, Preprocessing, None]
                   ) -> Optional[Preprocessing]:
  if preprocessing is None:
    return None
  if isinstance(preprocessing, (str, Preprocessing)):
    return preprocessing_of(preprocessing)
  raise ValueError(
      f"`preprocessing` (={preprocessing!r}) must be a "
      "`sr_jax.models.Preprocessing`, an architecture name or None.")


def valid_range(preprocessing: Preprocessing) -> tuple[np.ndarray, np.ndarray]:
  """Per-channel bounds of pixels 0..255 in the normalized input space.

  Examples:
    >>> low, high = valid_range(Preprocessing(mean=(0.5,) * 3, std=(0.5,) * 3))
    >>> low.tolist(), high.tolist()
    ([-1.0, -1.0, -1.0], [1.0, 1.0, 1.0])
  """
  return preprocessing.pixel_range()


def _clip_bounds(clip: Any, prep: Optional[Preprocessing], channels: int):
  """(enabled, low, high) from the `clip` option."""
  if clip is None or clip is False:
    return False, np.zeros(channels), np.zeros(channels)
  if clip is True:
    if prep is None:
      raise ValueError(
          "`clip` (=True) clips to the valid input range, which needs "
          "`preprocessing`; pass it, or explicit bounds `clip=(low, high)`.")
    low, high = valid_range(prep)
  elif isinstance(clip, (tuple, list)) and len(clip) == 2:
    low, high = (np.broadcast_to(np.asarray(v, np.float64), (channels,))
                 for v in clip)
  else:
    raise ValueError(
        f"`clip` (={clip!r}) must be None, True (the preprocessing's valid "
        "range) or a (low, high) pair of numbers or per-channel sequences.")
  if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))
          and np.all(low < high)):
    raise ValueError(f"`clip` bounds (low={low.tolist()}, "
                     f"high={high.tolist()}) must be finite with low < high.")
  return True, low, high


def to_image(array: jax.typing.ArrayLike,
             preprocessing: Union[str, Preprocessing, None] = None
             ) -> np.ndarray:
  """A normalized-space HxWxC array as a displayable uint8 image.

  With `preprocessing`, the normalization is undone (`x * std + mean`, then
  divided by `scale`) and the pixels are rounded and clipped to 0..255.
  Without it, the array is min-max scaled to 0..255 over all channels (a
  constant array becomes zeros).
  """
  a = np.asarray(array, np.float64)
  prep = _preprocessing(preprocessing)
  if prep is not None:
    pixels = (a * np.asarray(prep.std) + np.asarray(prep.mean)) / prep.scale
  else:
    pixels = maps.minmax(a) * 255.0
  return np.clip(np.round(pixels), 0, 255).astype(np.uint8)


def class_model(
    model: Any,
    variables: Any,
    target: int,
    *,
    image_shape: Sequence[int],
    steps: int,
    tx: Optional[optax.GradientTransformation] = None,
    learning_rate: Optional[float] = None,
    l2: float = DEFAULT_L2,
    key: Optional[jax.Array] = None,
    jitter: int = 0,
    blur_every: int = 0,
    blur_sigma: float = 0.5,
    clip: Union[None, bool, tuple[Any, Any]] = None,
    normalize_grad: bool = False,
    preprocessing: Union[str, Preprocessing, None] = None,
    progress: bool = True,
) -> ClassModel:
  """The class model of `target`: argmax_I S_target(I) - l2 * ||I||^2.

  Args:
    model: a linen Module, NNX Module, equinox Module or function
      `f(params, x) -> logits` (see `sr_jax.core.as_function`), taking NHWC
      batches in its normalized input space.
    variables: the linen variables or the function's params; None for NNX and
      equinox modules.
    target: the class, an integer in [0, number of classes).
    image_shape: (height, width, channels) of one input image.
    steps: number of ascent steps, >= 1.
    tx: the optax optimiser (it minimises -objective). None: plain gradient
      ascent, `optax.sgd(learning_rate)`, as the paper implies.
    learning_rate: the step size of the default optimiser (default
      `DEFAULT_LEARNING_RATE`); not allowed together with `tx`.
    l2: the weight lambda of the L2 penalty, >= 0. The paper does not give
      its value; `DEFAULT_L2` is CS231n's notebook's.
    key: PRNG key. None: start from the zero image (the dataset mean) and
      draw any jitter from `PRNGKey(0)`. A key: start from standard normal
      noise in the normalized space (one dataset std per pixel).
    jitter: largest random shift in pixels per axis per step (0: off).
    blur_every: blur the image after every n-th step (0: off).
    blur_sigma: the blur's Gaussian standard deviation in pixels (> 0).
    clip: None: off. True: clip to the valid input range, pixels 0..255
      mapped through the preprocessing (`valid_range`). Or explicit
      `(low, high)` bounds, numbers or per-channel sequences.
    normalize_grad: step along the L2-normalized gradient.
    preprocessing: how the model normalizes its input (a `Preprocessing` or
      an architecture name); used for `clip=True` and to de-normalize the
      image. None: the image is min-max scaled.
    progress: show a progress bar when the run takes more than one chunk
      (`CHUNK` steps); never inside traced code.

  Returns:
    A `ClassModel` (image, array, scores).

  Raises:
    ValueError: for a bad `target`, `image_shape`, `steps`, `l2`, `tx` with
      `learning_rate`, or bad regulariser options.

  Examples:
    >>> import jax.numpy as jnp
    >>> w = jnp.ones((2 * 2 * 1, 3))
    >>> f = lambda p, x: x.reshape(x.shape[0], -1) @ p
    >>> out = class_model(f, w, 1, image_shape=(2, 2, 1), steps=20, l2=0.5)
    >>> bool(jnp.allclose(out.array, 1.0, atol=1e-5))  # w / (2 * l2)
    True
  """
  shape = _check_shape(image_shape)
  _check_int(steps, "steps", 1)
  _check_int(jitter, "jitter", 0)
  _check_int(blur_every, "blur_every", 0)
  if not (isinstance(l2, (int, float, np.floating)) and math.isfinite(l2)
          and l2 >= 0):
    raise ValueError(f"`l2` (={l2!r}) must be a finite number >= 0.")
  if blur_every and not (isinstance(blur_sigma, (int, float))
                         and 0 < blur_sigma < math.inf):
    raise ValueError(f"`blur_sigma` (={blur_sigma!r}) must be a number > 0.")
  if tx is not None and learning_rate is not None:
    raise ValueError(
        f"`learning_rate` (={learning_rate!r}) is for the default optimiser; "
        "give it to your `tx` instead.")
  if tx is None:
    rate = DEFAULT_LEARNING_RATE if learning_rate is None else learning_rate
    if not (isinstance(rate, (int, float)) and 0 < rate < math.inf):
      raise ValueError(
          f"`learning_rate` (={learning_rate!r}) must be a number > 0.")
    tx = _sgd(float(rate))
  prep = _preprocessing(preprocessing)
  if prep is not None and shape[-1] != len(prep.mean):
    raise ValueError(
        f"`image_shape` (={shape}) has {shape[-1]} channels but "
        f"`preprocessing` normalizes {len(prep.mean)}.")
  clip_on, low, high = _clip_bounds(clip, prep, shape[-1])

  f, params = as_function(model, variables)
  x0 = jnp.zeros((1, *shape))
  try:
    logits = jax.eval_shape(f, params, x0)
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f"`image_shape` (={shape}) does not fit the model: "
                     f"{type(e).__name__}: {e}") from e
  if len(logits.shape) != 2 or logits.shape[0] != 1:
    raise ValueError(f"the model must return logits of shape (batch, classes);"
                     f" it returns {logits.shape}.")
  classes = logits.shape[1]
  if not _is_int(target) or not 0 <= target < classes:
    raise ValueError(
        f"`target` (={target!r}) must be an integer in [0, {classes}).")

  if key is None:
    steps_key = jax.random.PRNGKey(0)
  else:
    init_key, steps_key = jax.random.split(key)
    x0 = jax.random.normal(init_key, x0.shape, x0.dtype)
  n_chunks = -(-steps // CHUNK)
  sigma = float(blur_sigma) if blur_every else 0.0
  config = _Config(jitter, blur_every, sigma, clip_on, bool(normalize_grad),
                   -(-steps // n_chunks))
  dtype = x0.dtype
  carry = (x0, tx.init(x0), steps_key, jnp.zeros((), jnp.int32))
  args = (jnp.asarray(target, jnp.int32), jnp.asarray(l2, dtype),
          jnp.asarray(steps, jnp.int32), jnp.asarray(low, dtype),
          jnp.asarray(high, dtype))
  scores = []
  with _progress(steps, progress and n_chunks > 1) as bar:
    for i in range(n_chunks):
      carry, chunk_scores = _chunk(f, tx, config, params, *args, carry)
      scores.append(chunk_scores)
      if progress and n_chunks > 1:
        jax.block_until_ready(chunk_scores)
        bar.update(min(config.chunk, steps - i * config.chunk))
  array = carry[0][0]
  if not bool(jnp.all(jnp.isfinite(array))):
    raise ValueError(
        "The ascent diverged (the image is no longer finite); lower "
        "`learning_rate` (plain gradient ascent needs learning_rate * 2 * l2 "
        "< 2) or use `normalize_grad` and `clip`.")
  return ClassModel(to_image(array, prep), array,
                    jnp.concatenate(scores)[:steps])


def save_class_models(
    arch: str,
    out: Union[str, os.PathLike],
    *,
    classes: Optional[Sequence[int]] = None,
    weights: Optional[str] = None,
    columns: int = 4,
    tile_size: int = 128,
    **options: Any,
) -> list[pathlib.Path]:
  """Writes the class model of each class as a PNG, and a grid of them all.

  Args:
    arch: an architecture name (`sr_jax.models.ARCHS`); its bundled weights
      are used unless `weights` names a file (random weights if neither).
    out: the output folder (created): `class_<k>.png` per class and
      `class_models.png`, the grid titled with the class names.
    classes: the class indices (None: every class).
    weights: a safetensors weight file for `arch`.
    columns: grid columns.
    tile_size: the side of a grid tile in pixels.
    **options: keyword options of `class_model` (steps is required).

  Returns:
    The paths written, the grid last.

  Raises:
    ValueError: for an unknown `arch`, bad `classes` or bad options.
  """
  from sr_jax import files, viz  # pylint: disable=import-outside-toplevel
  from sr_jax.classes import label  # pylint: disable=import-outside-toplevel
  from sr_jax.models.loading import load_model  # pylint: disable=import-outside-toplevel
  from sr_jax.runner.options import resolve_weights  # pylint: disable=import-outside-toplevel
  from sr_jax.sr import class_names  # pylint: disable=import-outside-toplevel
  spec = get_arch(arch)
  weights = resolve_weights(arch, weights)
  model, variables = load_model(arch, weights)
  names = class_names(arch, weights)
  classes = list(range(spec.num_classes)) if classes is None else list(classes)
  bad = [c for c in classes if not _is_int(c) or not 0 <= c < spec.num_classes]
  if not classes or bad:
    raise ValueError(f"`classes` (={classes!r}) must be a non-empty list of "
                     f"class indices in [0, {spec.num_classes}).")
  _check_int(columns, "columns", 1)
  out = pathlib.Path(out)
  out.mkdir(parents=True, exist_ok=True)
  shape = (spec.input_size, spec.input_size, 3)
  paths, cells = [], []
  for c in classes:
    result = class_model(model, variables, c, image_shape=shape,
                         preprocessing=spec.preprocessing, **options)
    paths.append(out / f"class_{c}.png")
    files.save_png(paths[-1], result.image)
    cells.append(([label(c, names), f"score {float(result.scores[-1]):.1f}"],
                  result.image))
  rows = [cells[i:i + columns] for i in range(0, len(cells), columns)]
  paths.append(out / "class_models.png")
  files.save_png(paths[-1], viz._grid(rows, box=tile_size,  # pylint: disable=protected-access
                                   title=f"class models of {arch}"))
  return paths
