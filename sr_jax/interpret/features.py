"""Relevant internal features (Oramas, Wang & Tuytelaars, "Visual Explanation
by Interpretation: Improving Visual Feedback Capabilities of Deep Neural
Networks", ICLR 2019, §3.1-3.2).

* **Features.** For each tapped layer l (default: every conv output and
  every ReLU after one, `default_layers`) and filter k, the response is
  r_{l,k} = sum_u a_{l,k,u}^2 over the positions u of its activation map.
  Each layer's responses are L1-normalized, the layers concatenated in
  forward order, and the whole vector L2-normalized (`features`; batched and
  jitted over a dataset, with a progress bar).
* **Selection.** Per class j, the mu-lasso `min ||X w_j - 1[y = j]||^2 s.t.
  ||w_j||_1 <= mu` (`sr_jax.interpret.lasso`); the features with non-zero
  weight are class j's relevant features (`fit`).
* **The fitted value.** `RelevantFeatures` holds the layers, their channel
  counts, mu and the (classes, features) weights; it saves to safetensors
  with metadata (`save`, `load`);
  `sr_jax.interpret.register_relevant_features(fitted)` registers the
  "relevant_features" attribution method with it
  (`sr_jax.interpret.feature_explanations`).

Examples:
  >>> import sr_jax
  >>> from sr_jax.data import synthetic
  >>> model, v = sr_jax.load_model("demo_vgg")
  >>> images, labels, _ = synthetic.make_batch(synthetic.TRAIN_SEED, 0, 64)
  >>> x = sr_jax.preprocess(images, arch="demo_vgg")  # doctest: +SKIP
  >>> fitted = fit(model, v, x, labels, mu=5.0)  # doctest: +SKIP
  >>> fitted.relevant(0)[:3]  # doctest: +SKIP
  array([...])
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import pathlib
from typing import Any, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from sr_jax.core import graph as graph_lib
from sr_jax.core.backward import check_input, model_graph
from sr_jax.core.interpret import evaluate
from sr_jax.core.models import ModelFn, as_function
from sr_jax.interpret import lasso

PathLike = Union[str, os.PathLike]
FORMAT = "sr_jax.relevant_features/1"
DEFAULT_BATCH_SIZE = 64


def default_layers(taps: dict[str, graph_lib.Tap]) -> tuple[str, ...]:
  """Every conv output and ReLU output with two spatial axes, in order."""
  return tuple(t.name for t in taps.values() if _spatial(t) and (
      t.kind == "conv" or (t.kind == "activation"
                           and t.name.endswith("/relu"))))


def _spatial(tap: graph_lib.Tap) -> bool:
  return tap.feature_axis is not None and len(tap.spatial_axes) == 2


def check_layers(layers: Optional[Sequence[str]],
                 taps: dict[str, graph_lib.Tap]) -> tuple[str, ...]:
  """`layers` checked against the model's taps (None: `default_layers`).

  Raises:
    ValueError: for an empty list, a repeated or unknown name (the message
      lists the known ones), or a value without two spatial axes.
  """
  if layers is None:
    layers = default_layers(taps)
    if not layers:
      raise ValueError("The model has no convolutional feature maps to take "
                       "features from; pass `layers`.")
    return layers
  if isinstance(layers, str) or not layers:
    raise ValueError(f"`layers` (={layers!r}) must be a non-empty sequence "
                     "of layer names, or None for every conv and ReLU.")
  layers = tuple(layers)
  for name in layers:
    if name not in taps:
      known = [t.name for t in taps.values() if _spatial(t)]
      raise ValueError(
          f"Unknown `layers` entry (={name!r}); the model's feature maps "
          f"are: {', '.join(known)}.")
    if not _spatial(taps[name]):
      raise ValueError(
          f"`layers` entry {name!r} (shape={taps[name].shape}) has no two "
          "spatial axes; choose conv layers or the activations after them.")
  if len(set(layers)) != len(layers):
    raise ValueError(f"`layers` (={layers!r}) names a layer twice.")
  return layers


def channels_of(value: jax.Array, tap: graph_lib.Tap) -> jax.Array:
  """A tapped feature map as (batch, positions, channels), positions in the
  row-major order of the tap's spatial axes."""
  order = (0, *tap.spatial_axes, tap.feature_axis)
  a = jnp.transpose(value, order)
  return a.reshape(a.shape[0], -1, a.shape[-1])


def pool(values: Sequence[jax.Array], taps: Sequence[graph_lib.Tap]
         ) -> jax.Array:
  """The feature vector of each example: per-layer L1-normalized sums of
  squares, concatenated, then L2-normalized; (batch, sum of channels).

  An all-zero layer (or vector) stays zero."""
  parts = []
  for value, tap in zip(values, taps):
    a = channels_of(value, tap)
    r = jnp.sum(a * a, axis=1)
    parts.append(r / _nonzero(jnp.sum(r, axis=1, keepdims=True)))
  v = jnp.concatenate(parts, axis=1)
  return v / _nonzero(jnp.sqrt(jnp.sum(v * v, axis=1, keepdims=True)))


def _nonzero(d: jax.Array) -> jax.Array:
  return jnp.where(d > 0, d, jnp.ones_like(d))


@functools.partial(jax.jit, static_argnames=("fn", "layers"))
def _batch(fn: ModelFn, params: Any, x: jax.Array, layers: tuple[str, ...]
           ) -> tuple[jax.Array, jax.Array]:
  """(features, peaks) of one batch; peaks: each filter's argmax position."""
  graph = model_graph(fn, params, x)
  _, acts = evaluate(graph, params, x, taps=layers)
  taps = [graph.taps[n] for n in layers]
  values = [acts[n] for n in layers]
  peaks = jnp.concatenate([jnp.argmax(channels_of(v, t), axis=1)
                           for v, t in zip(values, taps)], axis=1)
  return pool(values, taps), peaks.astype(jnp.int32)


def _progress(total: int, enabled: bool, desc: str):
  from sr_jax.runner.progress import progress  # pylint: disable=import-outside-toplevel
  return progress(total=total, desc=desc, unit="images", disable=not enabled)


def taps_for(model: Any, variables: Any, x: ArrayLike
             ) -> dict[str, graph_lib.Tap]:
  """The model's taps for one example shaped like `x[0]`."""
  fn, params = as_function(model, variables)
  x = jnp.asarray(x)
  return model_graph(fn, params, jax.ShapeDtypeStruct((1, *x.shape[1:]),
                                                      x.dtype)).taps


def features(model: Any, variables: Any, x: ArrayLike, *,
             layers: Optional[Sequence[str]] = None,
             batch_size: int = DEFAULT_BATCH_SIZE, progress: bool = True,
             peaks: bool = False
             ) -> Union[jax.Array, tuple[jax.Array, jax.Array]]:
  """The pooled feature vectors of a dataset.

  Args:
    model: a linen, NNX or equinox module, or a function `f(params, x)`.
    variables: its variables or params (None for NNX and equinox).
    x: the normalized NHWC inputs, (N, H, W, C).
    layers: tap names (see `sr_jax.attribution.layers`); None: every conv
      and ReLU output (`default_layers`).
    batch_size: images per jitted call (the last batch is padded, so one
      shape is compiled).
    progress: show a progress bar (several batches only).
    peaks: also return each filter's peak position.

  Returns:
    (N, M) features, M the layers' total channel count; with `peaks`, also
    (N, M) int32 flat positions (row-major over the tap's spatial axes) of
    each filter's largest activation.

  Raises:
    ValueError: for bad `layers`, `batch_size` or input.

  Examples:
    >>> import sr_jax
    >>> model, v = sr_jax.load_model("demo_vgg_tiny")
    >>> features(model, v, jnp.ones((3, 32, 32, 3)), progress=False).shape
    (3, 240)
  """
  x = check_input(x)
  if (not isinstance(batch_size, (int, np.integer))
      or isinstance(batch_size, bool) or batch_size < 1):
    raise ValueError(f"`batch_size` (={batch_size!r}) must be an integer "
                     ">= 1.")
  fn, params = as_function(model, variables)
  layers = check_layers(layers, taps_for(fn, params, x))
  n = x.shape[0]
  size = min(int(batch_size), n)
  out, where = [], []
  with _progress(n, progress and n > size, "features") as bar:
    for start in range(0, n, size):
      chunk = x[start:start + size]
      k = chunk.shape[0]
      if k < size:
        chunk = jnp.concatenate(
            [chunk, jnp.zeros((size - k, *chunk.shape[1:]), chunk.dtype)])
      f, p = _batch(fn, params, chunk, layers)
      out.append(f[:k])
      where.append(p[:k])
      bar.update(k)
  result = jnp.concatenate(out)
  return (result, jnp.concatenate(where)) if peaks else result


@dataclasses.dataclass(frozen=True, eq=False)
class RelevantFeatures:
  """A fitted selection: what `fit` returns and `load` reads.

  Attributes:
    layers: the tap names, in feature order.
    channels: each layer's channel count.
    mu: the L1 radius of each class's weights.
    weights: (classes, features) float32; zero off each class's support.
  """

  layers: tuple[str, ...]
  channels: tuple[int, ...]
  mu: float
  weights: np.ndarray

  def __post_init__(self):
    w = np.array(self.weights, np.float32)  # a copy, made read-only
    if w.ndim != 2 or w.shape[1] != sum(self.channels) or len(
        self.layers) != len(self.channels) or not np.all(np.isfinite(w)):
      raise ValueError(
          f"`weights` (shape={w.shape}) must be finite and (classes, "
          f"{sum(self.channels)}), one column per channel of `layers` "
          f"({len(self.layers)} layers, {len(self.channels)} channel counts).")
    lasso.check_mu(self.mu)
    w.setflags(write=False)
    object.__setattr__(self, "weights", w)
    object.__setattr__(self, "layers", tuple(self.layers))
    object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))

  @property
  def num_classes(self) -> int:
    return self.weights.shape[0]

  def relevant(self, target: int) -> np.ndarray:
    """Class `target`'s relevant features (non-zero weight), largest weight
    first."""
    w = self.weights[target]
    idx = np.flatnonzero(w)
    return idx[np.argsort(-w[idx], kind="stable")]

  def describe(self, index: int) -> tuple[str, int]:
    """`(layer, channel)` of feature `index`."""
    ends = np.cumsum(self.channels)
    i = int(np.searchsorted(ends, index, side="right"))
    return self.layers[i], int(index - (ends[i] - self.channels[i]))

  def save(self, path: PathLike) -> pathlib.Path:
    """Writes the selection to a safetensors file, atomically."""
    import safetensors.numpy  # pylint: disable=import-outside-toplevel
    from sr_jax import files  # pylint: disable=import-outside-toplevel
    meta = {"format": FORMAT, "layers": json.dumps(list(self.layers)),
            "channels": json.dumps(list(self.channels)),
            "mu": repr(float(self.mu))}
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    files.atomic_write(path, safetensors.numpy.save(
        {"weights": np.ascontiguousarray(self.weights)}, metadata=meta))
    return path


def load(path: PathLike) -> RelevantFeatures:
  """Reads a selection written by `RelevantFeatures.save`.

  Raises:
    FileNotFoundError: if `path` is not a file.
    ValueError: if it is not a readable safetensors file of this format.
  """
  from sr_jax.weights import format as weights_format  # pylint: disable=import-outside-toplevel
  tensors, meta = weights_format.read(path)
  if meta.get("format") != FORMAT or set(tensors) != {"weights"}:
    raise ValueError(
        f"`path` (={str(path)!r}) is not a relevant-feature file (format "
        f"{meta.get('format')!r}, tensors {sorted(tensors)}; expected format "
        f"{FORMAT!r} with one tensor `weights`).")
  try:
    layers, channels = json.loads(meta["layers"]), json.loads(meta["channels"])
    mu = float(meta["mu"])
  except (KeyError, ValueError) as err:
    raise ValueError(f"`path` (={str(path)!r}) has bad metadata: "
                     f"{err}") from None
  return RelevantFeatures(tuple(layers), tuple(channels), mu,
                          tensors["weights"])


def fit(model: Any, variables: Any, x: ArrayLike, labels: ArrayLike, *,
        mu: float, layers: Optional[Sequence[str]] = None,
        num_classes: Optional[int] = None,
        precomputed: Optional[ArrayLike] = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        steps: int = lasso.DEFAULT_STEPS, tol: float = lasso.DEFAULT_TOL,
        progress: bool = True) -> RelevantFeatures:
  """Selects each class's relevant features with the mu-lasso.

  Args:
    model: a linen, NNX or equinox module, or a function `f(params, x)`.
    variables: its variables or params (None for NNX and equinox).
    x: the normalized NHWC training inputs, (N, H, W, C).
    labels: their classes, ints (N,).
    mu: the L1 radius of each class's weights, > 0 (the paper's mu).
    layers: tap names; None: every conv and ReLU output.
    num_classes: the number of classes; None: the model's output size.
    precomputed: `features(model, variables, x, layers=layers)`, computed
      before, to skip that pass.
    batch_size: images per jitted call of the feature pass.
    steps: the most solver iterations (`lasso.mu_lasso`).
    tol: the solver's relative Frank-Wolfe gap at which it stops.
    progress: show a progress bar over the images.

  Returns:
    The `RelevantFeatures`.

  Raises:
    ValueError: for mu <= 0, unknown layers, or labels that do not fit.
  """
  lasso.check_mu(mu)
  x = check_input(x)
  fn, params = as_function(model, variables)
  taps = taps_for(fn, params, x)
  layers = check_layers(layers, taps)
  if num_classes is None:
    num_classes = int(jax.eval_shape(fn, params, jax.ShapeDtypeStruct(
        (1, *x.shape[1:]), x.dtype)).shape[-1])
  y = np.asarray(labels)
  if (y.shape != (x.shape[0],) or not np.issubdtype(y.dtype, np.integer)
      or y.size and (y.min() < 0 or y.max() >= num_classes)):
    raise ValueError(
        f"`labels` (shape={y.shape}, dtype={y.dtype}) must be one int in "
        f"[0, {num_classes}) per input ({x.shape[0]}).")
  if precomputed is None:
    precomputed = features(fn, params, x, layers=layers, batch_size=batch_size,
                         progress=progress)
  channels = tuple(taps[n].shape[taps[n].feature_axis] for n in layers)
  feats = jnp.asarray(precomputed)
  if feats.shape != (x.shape[0], sum(channels)):
    raise ValueError(f"`precomputed` (shape={feats.shape}) must be "
                     f"({x.shape[0]}, {sum(channels)}) for these layers.")
  targets = jax.nn.one_hot(y, num_classes, dtype=feats.dtype)
  result = lasso.mu_lasso(feats, targets, mu=mu, steps=steps, tol=tol)
  return RelevantFeatures(layers, channels, float(mu),
                          np.asarray(result.weights, np.float32))
