"""Multi-layer maps (Rebuffi et al., CVPR 2020, Sec. 4.3): one method's maps
at several layers, combined.

Each layer's map is upsampled to the input and min-max normalized per
example (`sr_jax.maps.minmax`), and the maps M_l are combined with weights
w_l normalized to sum to 1 (uniform by default):

* mode "product": prod_l M_l ** w_l (a location must matter at every layer);
* mode "sum": sum_l w_l M_l.

`combine_layers(method, layers)` returns a method with the one contract. For
the Extract & Aggregate family ("grad_cam", "normgrad",
"normgrad_selective", "normgrad_conv", "linear_approx") all layers come from
one forward and one backward pass, and `layers=None` means every
convolution (its activation; "normgrad_conv": the convolution itself); any
other method taking a `layer=` option is called once per layer. Registered
as "multi_layer" with options `method`, `layers`, `mode` and `weights`, so
the SR map and the batch runner can use it:

    sr_jax.sr_map(model, variables, image, arch="vgg16",
                  method="multi_layer",
                  method_options={"method": "normgrad", "mode": "product"})
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from sr_jax import maps as maps_lib
from sr_jax.attribution import _extract
from sr_jax.attribution._core import Method, get_method, register
from sr_jax.attribution.smoothgrad import fixed_target
from sr_jax.core import backward as core
from sr_jax.core.backward import Target

MODES = ("product", "sum")


class Combination(NamedTuple):
  """Combines input-sized maps (hashable: a static argument of `jit`).

  Attributes:
    mode: "product" or "sum".
    weights: one weight per map, summing to 1; None: uniform.
  """

  mode: str
  weights: Optional[tuple[float, ...]] = None

  def __call__(self, maps: Sequence[jax.Array]) -> jax.Array:
    n = len(maps)
    w = self.weights or (1.0 / n,) * n
    if len(w) != n:
      raise ValueError(f"`weights` has {len(w)} values; it must have one "
                       f"weight per layer (={n}).")
    scaled = [maps_lib.minmax(m, axis=tuple(range(1, m.ndim))) for m in maps]
    if self.mode == "sum":
      return functools.reduce(jnp.add, [wi * m for wi, m in zip(w, scaled)])
    return functools.reduce(jnp.multiply, [m ** wi for wi, m in zip(w,
                                                                    scaled)])


def _check(layers: Any, mode: Any, weights: Any
           ) -> tuple[Optional[tuple[str, ...]], Combination]:
  if mode not in MODES:
    raise ValueError(f"`mode` (={mode!r}) must be one of "
                     f"{', '.join(repr(m) for m in MODES)}.")
  if layers is not None:
    if isinstance(layers, str) or not all(isinstance(l, str)
                                          for l in layers) or not layers:
      raise ValueError(f"`layers` (={layers!r}) must be None (every "
                       "convolution) or a non-empty sequence of layer names.")
    layers = tuple(layers)
  if weights is not None:
    w = tuple(float(v) for v in weights)
    if not w or min(w) < 0 or not math.fsum(w) > 0 or (
        layers is not None and len(w) != len(layers)):
      raise ValueError(
          f"`weights` (={weights!r}) must be one number >= 0 per layer, not "
          "all zero.")
    weights = tuple(v / math.fsum(w) for v in w)
  return layers, Combination(mode, weights)


def combine_layers(method: Union[str, Method],
                   layers: Optional[Sequence[str]], *, mode: str = "product",
                   weights: Optional[Sequence[float]] = None) -> Method:
  """`method`'s maps at `layers`, normalized and combined.

  Args:
    method: a registered name or a method function with a `layer=` option.
    layers: layer names (`sr_jax.attribution.layers` lists them); None:
      every convolution (the Extract & Aggregate family only).
    mode: "product" (prod M_l ** w_l) or "sum" (sum w_l M_l).
    weights: one weight >= 0 per layer (normalized to sum to 1); None:
      uniform.

  Returns:
    A method `fn(model, variables, x, *, target=None, **options)` whose map
    lies in [0, 1].

  Raises:
    ValueError: for an unknown method or mode, bad layers or weights, or
      `layers=None` with a method outside the family.

  Examples:
    >>> import sr_jax
    >>> model, variables = sr_jax.load_model("vgg_tiny")
    >>> both = combine_layers("grad_cam", ["features_3/relu",
    ...                                    "features_6/relu"], mode="sum")
    >>> both(model, variables, jnp.ones((1, 32, 32, 3)), target=0).shape
    (1, 32, 32, 3)
  """
  fn = get_method(method)
  layers, combination = _check(layers, mode, weights)
  recipe = _extract.method_recipe(fn)
  if recipe is not None:
    plan = tuple((recipe, name) for name in (layers or (_extract.ALL,)))

    def combined(model: Any, variables: Any, x: ArrayLike, *,
                 target: Target = None) -> jax.Array:
      return _extract.layer_maps(model, variables, x, target, plan=plan,
                                 combine=combination)
    return combined
  if layers is None:
    raise ValueError(
        f"`layers` (=None) means every convolution only for the Extract & "
        f"Aggregate methods; name the layers for `method` (={method!r}).")

  def per_layer(model: Any, variables: Any, x: ArrayLike, *,
                target: Target = None, **options: Any) -> jax.Array:
    x = core.check_input(x)
    t = fixed_target(model, variables, x, target)
    return combination([fn(model, variables, x, target=t, layer=name,
                           **options) for name in layers])
  return per_layer


@register("multi_layer")
def multi_layer(model: Any, variables: Any, x: ArrayLike, *,
                target: Target = None, method: str = "normgrad",
                layers: Optional[Sequence[str]] = None,
                mode: str = "product",
                weights: Optional[Sequence[float]] = None) -> jax.Array:
  """`combine_layers(method, layers, mode=mode, weights=weights)` as a
  registered method (default: NormGrad at every convolution, product).

  Args:
    model, variables, x, target: as for `grad_cam`.
    method, layers, mode, weights: see `combine_layers`.

  Returns:
    The combined map in [0, 1], an array of `x.shape`.
  """
  return combine_layers(method, layers, mode=mode, weights=weights)(
      model, variables, x, target=target)
