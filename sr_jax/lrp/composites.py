"""Composites: which LRP rule each layer gets.

A composite is an ordered tuple of `(predicate, rule)` entries; the first
entry whose predicate accepts a layer decides its rule (zennit's
`LayerMapComposite` and `SpecialFirstLayerMapComposite`, Anders et al. 2021).
Predicates see a `LayerInfo`: the Flax module, its path in the module tree
("features_0", "block/conv") and whether it is the first layer with
parameters that the forward pass calls.

Layers no entry matches keep their own gradient when they have no parameters
(max-pooling: winner takes all; dropout at inference: identity), and raise an
error when they do. Functions such as `nn.relu` are not modules and keep their
gradient, which passes relevance through (a ReLU's input relevance is zero
wherever its output is, because every rule but flat/w^2 multiplies by the
next layer's input).

Named composites live in `COMPOSITES`; `get_composite` builds one by name.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable, NamedTuple, Optional, Union

import flax.linen as nn
import numpy as np

from sr_jax.lrp import rules
from sr_jax.models.layers import AdaptiveAvgPool2d, MaxPool2d
from sr_jax.models.registry import Preprocessing, get_arch

RuleLike = Union[rules.Rule, rules.Gradient]


class LayerInfo(NamedTuple):
  """What a predicate knows about a layer.

  Attributes:
    module: the (bound) Flax module being called.
    path: its path in the module tree, names joined by "/".
    first: it is the first module with parameters that the forward calls.
  """

  module: nn.Module
  path: str
  first: bool


@dataclasses.dataclass(frozen=True)
class IsType:
  """Accepts modules that are instances of any of `types`."""

  types: tuple[type, ...]

  def __call__(self, layer: LayerInfo) -> bool:
    return isinstance(layer.module, self.types)


@dataclasses.dataclass(frozen=True)
class PathMatches:
  """Accepts modules whose path fully matches the regex `pattern`."""

  pattern: str

  def __call__(self, layer: LayerInfo) -> bool:
    return re.fullmatch(self.pattern, layer.path) is not None


@dataclasses.dataclass(frozen=True)
class FirstLayer:
  """Accepts the first module with parameters that the forward pass calls."""

  def __call__(self, layer: LayerInfo) -> bool:
    return layer.first


@dataclasses.dataclass(frozen=True)
class AllOf:
  """Accepts a module when every one of `predicates` does."""

  predicates: tuple[Callable[[LayerInfo], bool], ...]

  def __call__(self, layer: LayerInfo) -> bool:
    return all(p(layer) for p in self.predicates)


def is_type(*types: type) -> IsType:
  """A predicate on the module type, e.g. `is_type(nn.Conv)`."""
  return IsType(tuple(types))


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
      `rules.gradient()`.
    fold_batchnorm: merge each BatchNorm into the Conv or Dense whose output
      it normalises, as zennit's canonizers do, so the rule sees the merged
      weights and the BatchNorm passes relevance through.

  Examples:
    >>> c = Composite("mine", ((first_layer, rules.flat()),
    ...                        (is_type(nn.Conv), rules.gamma(0.5)),
    ...                        (is_type(nn.Dense), rules.epsilon(0.01))))
  """

  name: str
  entries: tuple[tuple[Callable[[LayerInfo], bool], RuleLike], ...]
  fold_batchnorm: bool = True

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

  `first` applies to the first module with parameters when it is a Conv or
  Dense.
  Average pooling gets `pool` (a linear layer: the "norm" rule, epsilon 1e-6,
  as in zennit) and max-pooling keeps its gradient.
  """
  linear = is_type(nn.Conv, nn.Dense)
  entries = ((AllOf((first_layer, linear)), first),) if first else ()
  return entries + ((is_type(nn.Conv), conv), (is_type(nn.Dense), dense),
                    (is_type(AdaptiveAvgPool2d), pool),
                    (is_type(MaxPool2d), rules.gradient()))


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
  """The per-channel input range after normalisation, for the z^B rule.

  Args:
    preprocessing: a `Preprocessing`, an architecture name, or None for the
      ImageNet normalisation of torchvision.

  Returns:
    `(low, high)`: float32 arrays of shape (3,), the values that pixels 0
    and 255 take after `(x * scale - mean) / std`.

  Examples:
    >>> low, high = box_bounds("vgg16")
    >>> [round(float(v), 3) for v in low]
    [-2.118, -2.036, -1.804]
  """
  if isinstance(preprocessing, str):
    preprocessing = get_arch(preprocessing).preprocessing
  p = Preprocessing() if preprocessing is None else preprocessing
  mean, std = np.asarray(p.mean, np.float64), np.asarray(p.std, np.float64)
  low = (0.0 * p.scale - mean) / std
  high = (255.0 * p.scale - mean) / std
  return low.astype(np.float32), high.astype(np.float32)


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

  Args:
    low: lowest normalised input, scalar or per channel; with `high` None
      both default to `box_bounds()` (ImageNet normalisation).
    high: highest normalised input.
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
