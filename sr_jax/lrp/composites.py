"""Composites: which LRP rule each layer gets.

A composite is an ordered tuple of `(predicate, rule)` entries; the first
entry whose predicate accepts a layer decides its rule (zennit's
`LayerMapComposite` and `SpecialFirstLayerMapComposite`, Anders et al. 2021).
Predicates see a `LayerInfo`: the layer's kind in the traced graph (conv,
dense, pool, max_pool), its name ("features_0", "block/conv") and whether it
is the first conv or dense layer of the forward pass.

Layers no entry matches keep their own gradient when they have no parameters
(max-pooling: winner takes all), and raise an error when they do.
Activations (`jax.nn.relu`, `max(x, 0)`, ...) keep their gradient, which
passes relevance through (a ReLU's input relevance is zero wherever its
output is, because every rule but flat/w^2 multiplies by the next layer's
input).

Named composites live in `COMPOSITES`; `get_composite` builds one by name.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable, NamedTuple, Optional, Union

import flax.linen as nn
import numpy as np

from sr_jax.archs import Preprocessing, preprocessing_of
from sr_jax.lrp import rules

RuleLike = Union[rules.Rule, rules.KeepGradient]


class LayerInfo(NamedTuple):
  """What a predicate knows about a layer of the traced graph.

  Attributes:
    path: the layer's name: its parameter path without the leaf name
      ("features_0", "block/conv", "layers/0"), or, for a parameter-free
      pool, where the model applies it ("avgpool").
    kind: "conv", "dense", "pool" (sums, means, average pooling, products
      with constant matrices) or "max_pool".
    first: it is the first conv or dense layer of the forward pass.
    primitive: the JAX primitive ("conv_general_dilated", "dot_general",
      "reduce_sum", ...).
    shape: the shape of the layer's output.
  """

  path: str
  kind: str
  first: bool
  primitive: str = ""
  shape: tuple[int, ...] = ()


# Module classes of linen, NNX and equinox, by name, and the layer kind they
# produce in the traced graph (BatchNorms fold into the layer before them).
_KIND_OF_TYPE = {
    "Conv": "conv", "ConvLocal": "conv", "ConvTranspose": "conv",
    "Conv1d": "conv", "Conv2d": "conv", "Conv3d": "conv",
    "Dense": "dense", "DenseGeneral": "dense", "Linear": "dense",
    "Einsum": "dense", "AdaptiveAvgPool2d": "pool", "AvgPool2d": "pool",
    "AvgPool": "pool", "MaxPool2d": "max_pool", "MaxPool": "max_pool",
}
LAYER_KINDS = ("conv", "dense", "pool", "max_pool")


def _kind(t: Union[type, str]) -> str:
  if isinstance(t, str):
    if t not in LAYER_KINDS:
      raise ValueError(
          f"Unknown layer kind (={t!r}); known kinds: "
          f"{', '.join(LAYER_KINDS)}.")
    return t
  for cls in getattr(t, "__mro__", ()):
    if cls.__name__ in _KIND_OF_TYPE:
      return _KIND_OF_TYPE[cls.__name__]
  raise ValueError(
      f"`is_type` got {t!r}, which is not a known layer type; pass a kind "
      f"({', '.join(LAYER_KINDS)}) or one of the module classes "
      f"{', '.join(sorted(_KIND_OF_TYPE))}.")


@dataclasses.dataclass(frozen=True)
class IsType:
  """Accepts layers of any of `kinds` ("conv", "dense", "pool", "max_pool")."""

  kinds: tuple[str, ...]

  def __call__(self, layer: LayerInfo) -> bool:
    return layer.kind in self.kinds


@dataclasses.dataclass(frozen=True)
class PathMatches:
  """Accepts modules whose path fully matches the regex `pattern`."""

  pattern: str

  def __call__(self, layer: LayerInfo) -> bool:
    return re.fullmatch(self.pattern, layer.path) is not None


@dataclasses.dataclass(frozen=True)
class FirstLayer:
  """Accepts the first conv or dense layer of the forward pass."""

  def __call__(self, layer: LayerInfo) -> bool:
    return layer.first


@dataclasses.dataclass(frozen=True)
class AllOf:
  """Accepts a module when every one of `predicates` does."""

  predicates: tuple[Callable[[LayerInfo], bool], ...]

  def __call__(self, layer: LayerInfo) -> bool:
    return all(p(layer) for p in self.predicates)


def is_type(*types: Union[type, str]) -> IsType:
  """A predicate on the layer kind: `is_type("conv")`, or by module class,
  `is_type(nn.Conv)` (linen, NNX and equinox classes map to their kind)."""
  return IsType(tuple(dict.fromkeys(_kind(t) for t in types)))


def path_matches(pattern: str) -> PathMatches:
  """A predicate on the module path, e.g. `path_matches(r"classifier_\\d+")`."""
  re.compile(pattern)
  return PathMatches(pattern)


first_layer = FirstLayer()


class Composite(NamedTuple):
  """An ordered map from layers to rules; the first matching entry wins.

  Attributes:
    name: for messages.
    entries: `(predicate, rule)` pairs; a rule is a `rules.Rule` or
      `rules.keep_gradient()`.
    fold_batchnorm: kept for compatibility; the traced graph always merges
      a bias and a per-channel affine chain (an inference BatchNorm) into the
      conv or dense layer before it, as zennit's canonizers do.
    residual_eps: stabiliser of residual sums `z = a + b`, whose relevance
      is split as `a / z` and `b / z` (Montavon et al. 2019).

  Examples:
    >>> c = Composite("mine", ((first_layer, rules.flat()),
    ...                        (is_type(nn.Conv), rules.gamma(0.5)),
    ...                        (is_type(nn.Dense), rules.epsilon(0.01))))
  """

  name: str
  entries: tuple[tuple[Callable[[LayerInfo], bool], RuleLike], ...]
  fold_batchnorm: bool = True
  residual_eps: float = 1e-9

  def rule_for(self, layer: LayerInfo) -> Optional[RuleLike]:
    """The rule of the first entry that accepts `layer`, or None."""
    for predicate, rule in self.entries:
      if predicate(layer):
        return rule
    return None


def layer_map(conv: RuleLike, dense: RuleLike, *,
              first: Optional[RuleLike] = None,
              pool: RuleLike = rules.epsilon(1e-6)) -> tuple:
  """The usual entries: optional first layer, convs, dense layers, pooling.

  `first` applies to the first conv or dense layer. Parameter-free linear
  layers (sums, means, average pooling) get `pool` (the "norm" rule, epsilon
  1e-6, as in zennit) and max-pooling keeps its gradient.
  """
  linear = is_type("conv", "dense")
  entries = ((AllOf((first_layer, linear)), first),) if first else ()
  return entries + ((is_type("conv"), conv), (is_type("dense"), dense),
                    (is_type("pool"), pool),
                    (is_type("max_pool"), rules.keep_gradient()))


COMPOSITES: dict[str, Callable[..., Composite]] = {}


def register_composite(name: str):
  """Decorator adding a composite factory to `COMPOSITES` under `name`."""
  def register(factory: Callable[..., Composite]) -> Callable[..., Composite]:
    COMPOSITES[name] = factory
    return factory
  return register


def get_composite(name_or_obj: Union[str, Composite], **kwargs: Any
                  ) -> Composite:
  """A composite by name (built with `kwargs`), or `name_or_obj` itself.

  Args:
    name_or_obj: a name in `COMPOSITES` or a `Composite`.
    **kwargs: arguments of the named composite's factory.

  Returns:
    The composite.

  Raises:
    ValueError: for an unknown name, or arguments given with a `Composite`.

  Examples:
    >>> get_composite("epsilon_plus_flat").name
    'epsilon_plus_flat'
  """
  if isinstance(name_or_obj, Composite):
    if kwargs:
      raise ValueError(
          f"Composite arguments {sorted(kwargs)} apply to named composites "
          f"only, not to the Composite `{name_or_obj.name}`.")
    # Tuples all the way down, so that the composite hashes (jit static).
    return name_or_obj._replace(
        entries=tuple(tuple(entry) for entry in name_or_obj.entries))
  if not isinstance(name_or_obj, str) or name_or_obj not in COMPOSITES:
    raise ValueError(
        f"Unknown `composite` (={name_or_obj!r}); known composites: "
        f"{', '.join(sorted(COMPOSITES))}, or pass a Composite.")
  return COMPOSITES[name_or_obj](**kwargs)


def box_bounds(preprocessing: Union[Preprocessing, str, None] = None
               ) -> tuple[np.ndarray, np.ndarray]:
  """The per-channel input range after normalization, for the z^B rule.

  Args:
    preprocessing: a `Preprocessing`, the name of an architecture in the
      table `sr_jax.archs.ARCHS` (which `sr_jax.models` fills), or None for
      the ImageNet normalization of torchvision.

  Returns:
    `(low, high)`: float64 arrays of shape (3,), the values that pixels 0
    and 255 take after `(x * scale - mean) / std`
    (`Preprocessing.pixel_range`; `zbox` casts them to the input's dtype).

  Examples:
    >>> low, high = box_bounds("vgg16")
    >>> [round(float(v), 3) for v in low]
    [-2.118, -2.036, -1.804]
  """
  if preprocessing is None:
    preprocessing = Preprocessing()
  return preprocessing_of(preprocessing).pixel_range()


@register_composite("epsilon_plus")
def epsilon_plus(epsilon: float = 1e-6) -> Composite:
  """Convs z+, dense layers epsilon (Kohlbrenner et al. 2020)."""
  return Composite("epsilon_plus", layer_map(rules.zplus(),
                                             rules.epsilon(epsilon)))


@register_composite("epsilon_plus_flat")
def epsilon_plus_flat(epsilon: float = 1e-6) -> Composite:
  """`epsilon_plus` with the first layer flat."""
  return Composite("epsilon_plus_flat", layer_map(
      rules.zplus(), rules.epsilon(epsilon), first=rules.flat()))


@register_composite("epsilon_alpha2_beta1")
def epsilon_alpha2_beta1(epsilon: float = 1e-6) -> Composite:
  """Convs alpha2-beta1, dense layers epsilon."""
  return Composite("epsilon_alpha2_beta1", layer_map(
      rules.alpha_beta(2.0, 1.0), rules.epsilon(epsilon)))


@register_composite("epsilon_alpha2_beta1_flat")
def epsilon_alpha2_beta1_flat(epsilon: float = 1e-6) -> Composite:
  """`epsilon_alpha2_beta1` with the first layer flat."""
  return Composite("epsilon_alpha2_beta1_flat", layer_map(
      rules.alpha_beta(2.0, 1.0), rules.epsilon(epsilon), first=rules.flat()))


@register_composite("epsilon_gamma_box")
def epsilon_gamma_box(low: Any = None, high: Any = None, epsilon: float = 1e-6,
                      gamma: float = 0.25) -> Composite:
  """First layer z^B in `[low, high]`, convs gamma, dense layers epsilon.

  As in the literature (Montavon et al. 2019, "Layer-wise relevance
  propagation: an overview"; zennit's `EpsilonGammaBox`): the first layer
  gets `rules.zbox`, which has no bias term (Montavon et al. 2017), and the
  convs the generalised `rules.gamma` (Andeol et al. 2021), which equals
  Montavon et al.'s gamma after a ReLU.

  Args:
    low: lowest normalized input, scalar or per channel; with `high` None
      both default to `box_bounds()` (ImageNet normalization).
    high: highest normalized input.
    epsilon: epsilon of the dense layers.
    gamma: gamma of the convs.

  Returns:
    The composite.
  """
  if (low is None) != (high is None):
    raise ValueError(
        f"Give both `low` (={low}) and `high` (={high}), or neither for the "
        "ImageNet range `box_bounds()`.")
  if low is None:
    low, high = box_bounds()
  return Composite("epsilon_gamma_box", layer_map(
      rules.gamma(gamma), rules.epsilon(epsilon),
      first=rules.zbox(low, high)))


@register_composite("sr_paper")
def sr_paper() -> Composite:
  """The rules of the SR paper's notebooks (Li et al. 2017).

  Every dense layer z+ with the bias left out and a 1e-9 stabiliser; every
  conv, the first included, LRP-0 with a 1e-9 stabiliser and the bias in z;
  max-pooling winner-takes-all; average pooling epsilon 1e-9.
  """
  return Composite("sr_paper", layer_map(
      rules.epsilon(1e-9), rules.zplus(zero_bias=True, stabilizer=1e-9),
      pool=rules.epsilon(1e-9)))
