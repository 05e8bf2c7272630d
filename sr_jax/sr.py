"""The Salient Relevance (SR) map: LRP, then context-aware saliency of it.

Li, Tian, Mueller and Chen (2017), "Beyond saliency: understanding
convolutional neural networks from saliency prediction on layer-wise relevance
propagation". Step one is a layer-wise relevance propagation map
(`sr_jax.lrp.relevance`); step two turns it into an image
(`relevance_to_image`) and runs context-aware saliency (Goferman, Zelnik-Manor
and Tal 2012; `sr_jax.saliency`) on that image. The saliency map of the input
itself (the paper's "human" reference) and the input's Canny edges come with
the result, so that `sr_jax.viz.panel` can draw the paper's Figure 3.

`sr_map` explains one image; `sr_map_batch` runs LRP and both saliency maps
for a stack of images in jitted, vmapped steps; `explain_crops` is that
batched core on already-cropped images, with optional stage timings and
sharding of the batch axis over a device mesh (used by `sr_jax.batch`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from typing import Any, Mapping, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from sr_jax import _deprecation, attribution, lrp, maps, saliency
from sr_jax import weights as weights_lib
from sr_jax.core import backward as core
from sr_jax.core.models import as_function
from sr_jax.image_ops import canny
from sr_jax.classes import imagenet_classes, label
# `prepare` (the crop a model sees) is part of this module's API.
from sr_jax.models.preprocess import as_rgb_uint8, normalize, prepare
from sr_jax.models.registry import get_arch

RELEVANCE_IMAGES = ("abs_rgb", "sum_abs", "positive")
_LEGACY = ("method", "method_options", "composite", "relevance_image",
           "with_image_saliency")

Target = Union[None, int, Sequence[int], np.ndarray]


@dataclasses.dataclass(frozen=True)
class SRResult:
  """What `sr_map` found for one image (NumPy arrays, ready for files).

  Attributes:
    image: uint8 HxWx3, the crop the model saw (resized and cropped, not
      normalized).
    logits: float32 (C,), the model's output.
    target: the explained class.
    probability: softmax probability of `target`.
    relevance: float32 HxWx3, signed LRP relevance of the input.
    relevance_image: float32 in [0, 1], HxWx3 or HxW, the image the SR step
      saw (see `relevance_to_image`).
    sr: float32 HxW in [0, 1], the SR map.
    image_saliency: float32 HxW in [0, 1], context-aware saliency of `image`,
      or None when not asked for.
    edges: bool HxW, Canny edges of `image`.
  """

  image: np.ndarray
  logits: np.ndarray
  target: int
  probability: float
  relevance: np.ndarray
  relevance_image: np.ndarray
  sr: np.ndarray
  image_saliency: Optional[np.ndarray]
  edges: np.ndarray

  def _repr_png_(self) -> bytes:
    """The panel, so that a notebook shows the result as a picture."""
    from sr_jax import viz  # pylint: disable=import-outside-toplevel
    return viz.panel_png(self)

  def arrays(self) -> dict[str, np.ndarray]:
    """Every field as an array (for `np.savez`); a missing map is left out."""
    out = {f.name: np.asarray(getattr(self, f.name))
           for f in dataclasses.fields(self)}
    if self.image_saliency is None:
      del out["image_saliency"]
    return out


def _frozen(value: Any) -> Any:
  if isinstance(value, Mapping):
    return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
  if isinstance(value, (list, tuple)):
    return tuple(_frozen(v) for v in value)
  if isinstance(value, np.ndarray):
    return tuple(_frozen(v) for v in value.tolist())
  return value


@dataclasses.dataclass(frozen=True)
class SRConfig:
  """What an SR map is made of: one frozen, hashable value.

  The SR map is context-aware saliency of *an* attribution map (Li et al.
  2017 used LRP): `method` makes the map, `relevance_image` turns it into an
  image, and `saliency_options` configure `sr_jax.saliency.context_aware`.

  Attributes:
    method: a name in `sr_jax.attribution.METHODS` ("lrp", "gradient",
      "grad_cam", ...) or a method function.
    method_options: the method's keyword options, as sorted (name, value)
      pairs (`SRConfig.make` takes a dict); LRP's default composite is the
      SR paper's, "sr_paper".
    relevance_image: see `relevance_to_image`.
    with_image_saliency: also compute the saliency of the image itself.
    saliency_options: `context_aware` options, as sorted pairs; without
      `max_side` the maps keep the crop's size (`saliency_options_for`).

  Examples:
    >>> SRConfig.make(method="lrp", composite="epsilon_plus").options()
    {'composite': 'epsilon_plus'}
  """

  method: Any = "lrp"
  method_options: tuple = (("composite", "sr_paper"),)
  relevance_image: str = "abs_rgb"
  with_image_saliency: bool = True
  saliency_options: tuple = ()

  @classmethod
  def make(cls, *, method: Any = "lrp",
           method_options: Optional[Mapping[str, Any]] = None,
           composite: Any = None, relevance_image: str = "abs_rgb",
           with_image_saliency: bool = True,
           saliency_options: Optional[Mapping[str, Any]] = None
           ) -> "SRConfig":
    """A checked config from keyword values.

    `composite` is the documented alias of `method_options={"composite":
    ...}` for `method="lrp"`.

    Raises:
      ValueError: for an unknown method or relevance image, options that
        are not a mapping, or `composite` given with another method.
    """
    attribution.get_method(method)
    if method_options is not None and not isinstance(method_options, Mapping):
      raise ValueError(
          f"`method_options` (={method_options!r}) must be a dict of the "
          "method's keyword options.")
    opts = dict(method_options or {})
    if composite is not None:
      if method != "lrp":
        raise ValueError(
            f"`composite` (={composite!r}) applies to method 'lrp' only, not "
            f"to `method` (={method!r}); pass method_options instead.")
      opts["composite"] = composite
    if method == "lrp":
      opts.setdefault("composite", "sr_paper")
    if relevance_image not in RELEVANCE_IMAGES:
      raise ValueError(f"`relevance_image` (={relevance_image!r}) must be one "
                       f"of {', '.join(repr(m) for m in RELEVANCE_IMAGES)}.")
    return cls(method, _frozen(opts), relevance_image,
               bool(with_image_saliency), _frozen(saliency_options or {}))

  def options(self) -> dict[str, Any]:
    """The method's options as a dict."""
    return dict(self.method_options)

  def saliency(self) -> dict[str, Any]:
    """The saliency options as a dict."""
    return dict(self.saliency_options)

  def describe(self) -> dict[str, Any]:
    """A JSON-friendly description (for run records)."""
    name = self.method if isinstance(self.method, str) else getattr(
        self.method, "__name__", repr(self.method))
    return {"method": name, "method_options": {
        k: (v if isinstance(v, (str, int, float, bool, type(None))) else
            repr(v)) for k, v in self.method_options},
            "relevance_image": self.relevance_image,
            "with_image_saliency": self.with_image_saliency,
            "saliency_options": dict(self.saliency_options)}


def config_from(config: Optional[SRConfig], legacy: Mapping[str, Any]
                ) -> SRConfig:
  """`config`, or one built from the keyword arguments of `sr_map` and
  friends (`method`, `method_options`, `composite`, `relevance_image`,
  `with_image_saliency`, and saliency options by name)."""
  kw = {k: v for k, v in legacy.items() if k in _LEGACY and v is not None}
  sal = {k: v for k, v in legacy.items() if k not in _LEGACY}
  sal.update(legacy.get("saliency_options") or {})
  sal.pop("saliency_options", None)
  if config is not None:
    if kw or sal:
      raise ValueError(
          f"Give either `config` or keyword options, not both (got "
          f"{sorted(set(kw) | set(sal))} with a config).")
    return config
  return SRConfig.make(**kw, saliency_options=sal)


def relevance_to_image(relevance: jax.typing.ArrayLike,
                       mode: str = "abs_rgb") -> jax.Array:
  """The image that the saliency step sees, made from relevance `R`.

  Works on one map (HxWx3) or a stack (...xHxWx3); every map is scaled on its
  own with one min-max over all its pixels (and channels); a constant map
  becomes all zeros.

  Args:
    relevance: signed relevance, last axis the 3 colour channels.
    mode: "abs_rgb": |R| of each channel, one min-max over all channels, a
      3-channel image (what the SR paper's released code did); "sum_abs": the
      channel sum of |R|, one plane; "positive": the channel sum of R clipped
      at 0, one plane.

  Returns:
    float32 (float64 for float64 relevance) in [0, 1]: ...xHxWx3 for
    "abs_rgb", ...xHxW otherwise.
  """
  r = jnp.asarray(relevance)
  if r.dtype != jnp.float64:  # float64 (under x64) stays float64
    r = r.astype(jnp.float32)
  if mode not in RELEVANCE_IMAGES:
    raise ValueError(f"`relevance_image` (={mode!r}) must be one of "
                     f"{', '.join(repr(m) for m in RELEVANCE_IMAGES)}.")
  if r.ndim < 3 or r.shape[-1] != 3:
    raise ValueError(f"`relevance` (shape={r.shape}) must be HxWx3 or a "
                     "stack ...xHxWx3.")
  if mode == "abs_rgb":
    img, axes = jnp.abs(r), (-3, -2, -1)
  elif mode == "sum_abs":
    img, axes = jnp.abs(r).sum(-1), (-2, -1)
  else:
    img, axes = jnp.maximum(r.sum(-1), 0.0), (-2, -1)
  return maps.minmax(img, axis=axes)


# Deprecated: `normalize` is `sr_jax.models.preprocess.normalize`.
normalise = _deprecation.alias(normalize, "sr_jax.sr.normalise")


@functools.partial(jax.jit, static_argnames=("fn", "config"))
def _relevance_step(fn: Any, params: Any, x: jax.Array,
                    target: jax.Array, *, config: SRConfig):
  """The method's map, the logits, and the map as an image (one jit)."""
  opts = config.options()
  if config.method == "lrp":
    r, logits = lrp.relevance(fn, params, x, target=target,
                              return_logits=True, **opts)
  else:
    r = attribution.get_method(config.method)(fn, params, x, target=target,
                                              **opts)
    logits = core.logits(fn, params, x)
  return r, logits, relevance_to_image(r, config.relevance_image)


def attribute(model: Any, variables: Any, x: jax.Array, t: jax.Array,
              config: SRConfig) -> tuple[jax.Array, jax.Array, jax.Array]:
  """`(map, logits, map image)` of the config's method for a batch `x`,
  with `t` from `sr_jax.core.backward.target_array` (-1: the argmax)."""
  fn, params = as_function(model, variables)
  return _relevance_step(fn, params, core.check_input(x), t, config=config)


def _softmax(logits: jax.typing.ArrayLike) -> np.ndarray:
  """Softmax over the last axis, in float64."""
  z = np.asarray(logits, np.float64)
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _results(crops, logits, targets, r, rel_img, sr, sal, edges):
  logits = np.asarray(logits, np.float32)
  prob = _softmax(logits)
  return [SRResult(
      image=crops[i], logits=logits[i], target=int(targets[i]),
      probability=float(prob[i, targets[i]]), relevance=np.asarray(r[i]),
      relevance_image=np.asarray(rel_img[i]), sr=np.asarray(sr[i]),
      image_saliency=None if sal is None else np.asarray(sal[i]),
      edges=edges[i]) for i in range(len(crops))]


class _Clock:
  """Adds the seconds of each stage to `timings` (when one is given)."""

  def __init__(self, timings: Optional[dict[str, float]]):
    self.timings, self.t = timings, time.perf_counter()

  def __call__(self, stage: str, value: Any = None) -> Any:
    jax.block_until_ready(value)
    now = time.perf_counter()
    if self.timings is not None:
      self.timings[stage] = self.timings.get(stage, 0.0) + now - self.t
    self.t = now
    return value


def explain_crops(
    model: Any,
    variables: Any,
    crops: np.ndarray,
    *,
    arch: str,
    target: Target = None,
    config: Optional[SRConfig] = None,
    mesh: Optional[jax.sharding.Mesh] = None,
    timings: Optional[dict[str, float]] = None,
    **options: Any,
) -> list[SRResult]:
  """SR results for a uint8 NxHxWx3 stack of crops made by `prepare`.

  The method's map and the relevance image run in one jitted step (compiled
  once per model, config and shape); both saliency maps run through
  `sr_jax.saliency.context_aware_batch` (jitted, split over the devices);
  Canny runs on the host.

  Args:
    model, variables: the classifier, e.g. from `sr_jax.load_model`.
    crops: uint8 NxHxWx3, all the same size.
    arch: architecture name, for the normalization.
    target: None (each image's top class), a class index, or one per image.
    config: an `SRConfig`; or give its fields as keyword `options` (method,
      method_options, composite, relevance_image, with_image_saliency,
      saliency_options).
    mesh: a 1-D `jax.sharding.Mesh` with axis "batch"; when given, the batch
      axis is sharded over it (N must be a multiple of its size) and the
      variables are replicated.
    timings: a dict to which the seconds of each stage are added:
      "preprocess", "lrp", "saliency_relevance", "saliency_image", "edges".
    **options: see `config`.

  Returns:
    One `SRResult` per crop, in order.
  """
  config = config_from(config, options)
  clock = _Clock(timings)
  crops = np.stack([as_rgb_uint8(c, name="crops[i]") for c in crops])
  opts = saliency_options_for(crops.shape[1:3], config.saliency())
  t = core.target_array(target, len(crops), get_arch(arch).num_classes)
  x = normalize(crops, arch)
  pixels = jnp.asarray(crops)
  if mesh is not None:
    batch = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("batch"))
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    variables = jax.device_put(variables, replicated)
    x, pixels, t = jax.device_put((x, pixels, t), batch)
  clock("preprocess", x)
  r, logits, rel_img = clock("lrp", attribute(model, variables, x, t, config))
  targets = np.asarray(logits).argmax(-1) if target is None else np.asarray(t)
  sr = clock("saliency_relevance", saliency.context_aware_batch(rel_img, **opts))
  sal = None
  if config.with_image_saliency:
    sal = clock("saliency_image", saliency.context_aware_batch(pixels, **opts))
  edges = [np.asarray(canny(c), bool) for c in crops]
  clock("edges")
  return _results(crops, logits, targets, r, rel_img, sr, sal, edges)


def sr_map_batch(
    model: Any,
    variables: Any,
    images: Sequence[np.ndarray],
    *,
    arch: str,
    target: Target = None,
    config: Optional[SRConfig] = None,
    **options: Any,
) -> list[SRResult]:
  """`sr_map` for several images at once, in jitted batched steps.

  Args:
    model, variables, arch, config, options: as in `sr_map`.
    images: uint8 images whose crops (`prepare`) all have the same size; with
      a resizing architecture (VGG-16: 256 then 224) any sizes do.
    target: None (each image's top class), a class index for all, or one per
      image.

  Returns:
    A list with one `SRResult` per image, in order (the same values as
    `sr_map` on each image, up to float32 rounding).
  """
  crops = [prepare(im, arch=arch) for im in images]
  shapes = sorted({c.shape for c in crops})
  if len(shapes) != 1:
    raise ValueError(f"`images` have crops of different sizes ({shapes}); "
                     "batch images of one size, or use a resizing arch.")
  return explain_crops(model, variables, np.stack(crops), arch=arch,
                       target=target, config=config_from(config, options))


def saliency_options_for(crop_shape: Sequence[int],
                         options: Optional[Mapping[str, Any]] = None
                         ) -> dict[str, Any]:
  """Saliency options for maps of a crop: by default never enlarged.

  `context_aware`'s own default resizes the larger side to 250 px, which
  would enlarge a 224-px crop (and its relevance map, which has exactly the
  crop's pixels) and so cost (250/224)^4 = 1.55x in the K-nearest search
  while adding no information. Unless `options` set `max_side`, the SR maps
  work at the crop's size, or at 250 px for a larger crop. Pass
  `max_side=250` to resize as the SR paper's Matlab code did.
  """
  opts = dict(options or {})
  if "max_side" not in opts:
    default = saliency.Options().max_side
    opts["max_side"] = min(default, max(int(n) for n in crop_shape[:2]))
  return opts


def sr_map(
    model: Any,
    variables: Any,
    image: np.ndarray,
    *,
    arch: str,
    target: Optional[int] = None,
    config: Optional[SRConfig] = None,
    **options: Any,
) -> SRResult:
  """The SR map of one image, with everything needed to draw it.

  Args:
    model, variables: the classifier, e.g. from `sr_jax.load_model(arch)`;
      any model kind the explanation core accepts.
    image: uint8 HxW, HxWx3 or HxWx4 image; it is resized and cropped as
      `arch` wants (`prepare`), and the result's `image` is that crop.
    arch: architecture name (preprocessing and class count).
    target: class to explain; None explains the top class.
    config: an `SRConfig` (method, its options, relevance image, saliency
      options); or give its fields as keyword `options`:
      `method="lrp"` (any name in `sr_jax.attribution.METHODS`),
      `method_options={...}`, `composite=` (alias of
      `method_options={"composite": ...}` for LRP; default "sr_paper"),
      `relevance_image`, `with_image_saliency`, and saliency options by name
      (`max_side=250`, ...).
    **options: see `config`.

  Returns:
    An `SRResult`.

  Examples:
    >>> import sr_jax
    >>> model, variables = sr_jax.load_model("vgg_tiny")
    >>> img = np.random.default_rng(0).integers(0, 256, (32, 32, 3), np.uint8)
    >>> out = sr_map(model, variables, img, arch="vgg_tiny")
    >>> out.sr.shape, out.relevance.shape
    ((32, 32), (32, 32, 3))
    >>> cam = sr_map(model, variables, img, arch="vgg_tiny", method="gradient")
  """
  if np.ndim(target) != 0:
    raise ValueError(f"`target` (={target!r}) must be None or one int.")
  config = config_from(config, options)
  crop = prepare(image, arch=arch)
  t = core.target_array(target, 1, get_arch(arch).num_classes)
  r, logits, rel_img = attribute(model, variables,
                                 normalize(crop[None], arch), t, config)
  saliency_options = saliency_options_for(crop.shape, config.saliency())
  sr = saliency.context_aware(rel_img[0], **saliency_options)
  sal = (saliency.context_aware(crop, **saliency_options)
         if config.with_image_saliency else None)
  targets = np.asarray(logits).argmax(-1) if target is None else np.asarray(t)
  edges = np.asarray(canny(crop), bool)
  return _results(crop[None], logits, targets, r, rel_img, sr[None],
                  None if sal is None else sal[None], [edges])[0]


def class_names(arch: str, weights: Optional[str] = None
                ) -> Optional[tuple[str, ...]]:
  """Class names for `arch` (with weight file `weights`), or None.

  A weight file whose metadata holds "classes" (a JSON list, as the demo
  model's does; `sr_jax.weights.read_metadata`) names the classes; otherwise
  architectures whose `ArchSpec.class_names` is "imagenet" get
  `sr_jax.imagenet_classes()`, and others have no names.
  """
  spec = get_arch(arch)
  if weights is not None:
    listed = weights_lib.read_metadata(weights).get("classes")
    if listed:
      names = tuple(json.loads(listed))
      if len(names) != spec.num_classes:
        raise ValueError(
            f"`weights` (={weights!r}) names {len(names)} classes in its "
            f"metadata, but `arch` (={arch!r}) has {spec.num_classes}.")
      return names
  return imagenet_classes() if spec.class_names == "imagenet" else None


def top_predictions(logits: jax.typing.ArrayLike, k: int = 5,
                    class_names: Optional[Sequence[str]] = None, *,
                    names: Optional[Sequence[str]] = None
                    ) -> list[tuple[int, str, float]]:
  """The `k` most probable classes as (index, label, probability).

  `label` is "282 tiger cat" with `class_names`, "282" without
  (`sr_jax.classes.label`). `names=` is the deprecated old keyword of
  `class_names`.
  """
  class_names = _deprecation.renamed_keyword(
      class_names, names, old="names", new="class_names",
      where="sr_jax.sr.top_predictions")
  prob = _softmax(np.reshape(logits, -1))
  order = np.argsort(-prob, kind="stable")[:k]
  return [(int(i), label(i, class_names), float(prob[i])) for i in order]
