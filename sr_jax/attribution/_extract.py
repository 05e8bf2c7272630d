"""Extract & Aggregate (Rebuffi et al., CVPR 2020, "There and Back Again:
Revisiting Backpropagation Saliency Methods"): a map from a layer's
activation `a` and the gradient `g` of the target logit at it.

A method of the family is a `Recipe`, two small functions and a flag:

* **extract** `(a, g, tap) -> e`: a feature at each location u:
  `product` a_u * g_u, `positive_product` max(a_u * g_u, 0), `outer`
  a_u (x) g_u (kept factored), `mean_gradient_product` a_u * mean_v g_v;
* **aggregate** `(e, tap) -> (batch, h, w)`: over the channels, `channel_sum`
  or `l2_norm` (the Frobenius norm of an outer product is ||a_u|| ||g_u||);
* **relu**: keep the positive part (Grad-CAM).

NormGrad is `outer` + `l2_norm`, its selective variant `positive_product` +
`l2_norm`, the linear approximation `product` + `channel_sum`, Grad-CAM
`mean_gradient_product` + `channel_sum` + ReLU. With `conv_input`, `a` is
the convolution's input unfolded into its patches (the layer's own kernel
size, stride, padding and dilation) and `g` the gradient at its output: the
gradient with respect to the kernel at each location, NormGrad's conv form.

`layer_maps` computes the maps of several (recipe, layer) pairs from one
forward and one backward pass, upsampled to the input, and combines them
(`combine_layers`).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from sr_jax.attribution._core import conv_activations, spatial_map, upsample
from sr_jax.core import backward as core
from sr_jax.core import graph as graph_lib
from sr_jax.core.interpret import _bind  # pylint: disable=protected-access


class Outer(NamedTuple):
  """a_u (x) g_u at each location, kept as its two factors."""

  a: Any
  g: Any


class Norms(NamedTuple):
  """Per-location L2 norms already taken, (batch, h, w)."""

  map: jax.Array


# The extract phase: (activation, gradient, tap) -> a feature per location.

def product(a: jax.Array, g: jax.Array, tap: graph_lib.Tap) -> jax.Array:
  """a_u * g_u (the linear approximation's feature)."""
  del tap
  return a * g


def positive_product(a: jax.Array, g: jax.Array, tap: graph_lib.Tap
                     ) -> jax.Array:
  """max(a_u * g_u, 0) (NormGrad's selective variant)."""
  del tap
  return jnp.maximum(a * g, 0)


def outer(a: Any, g: jax.Array, tap: graph_lib.Tap) -> Outer:
  """a_u (x) g_u, the gradient of a virtual 1x1 identity layer's weights at
  u (NormGrad)."""
  del tap
  return Outer(a, g)


def mean_gradient_product(a: jax.Array, g: jax.Array, tap: graph_lib.Tap
                          ) -> jax.Array:
  """a_u * mean_v g_v, the gradient averaged over the locations (Grad-CAM)."""
  return a * g.mean(axis=tap.spatial_axes, keepdims=True)


# The aggregate phase: (features, tap) -> (batch, h, w).

def channel_sum(e: jax.Array, tap: graph_lib.Tap) -> jax.Array:
  """The sum over channels."""
  return spatial_map(e, tap, lambda v, axis: v.sum(axis))


def _norm(v: Any, tap: graph_lib.Tap) -> jax.Array:
  if isinstance(v, Norms):
    return v.map
  return spatial_map(v, tap, lambda u, axis: jnp.sqrt((u * u).sum(axis)))


def l2_norm(e: Any, tap: graph_lib.Tap) -> jax.Array:
  """The L2 norm over channels; of an `Outer`, ||a_u|| * ||g_u||."""
  if isinstance(e, Outer):
    return _norm(e.a, tap) * _norm(e.g, tap)
  return _norm(e, tap)


class Recipe(NamedTuple):
  """One method of the family (hashable: a static argument of `jit`).

  Attributes:
    extract: `(a, g, tap) -> features`.
    aggregate: `(features, tap) -> (batch, h, w)`.
    relu: keep the positive part of the aggregated map.
    conv_input: `a` is the unfolded input of a convolution layer (the layer
      option names the convolution) and `g` the gradient at its output.
  """

  extract: Callable[..., Any]
  aggregate: Callable[..., jax.Array]
  relu: bool = False
  conv_input: bool = False


Plan = tuple[tuple[Recipe, Optional[str]], ...]
Combine = Optional[Callable[[list[jax.Array]], jax.Array]]


def _conv_layers(graph: graph_lib.Graph) -> list[graph_lib.Layer]:
  return [l for l in graph.layers.values() if l.kind == "conv"
          and l.primitive == "conv_general_dilated" and l.x_arg == 0]


def _find_conv(graph: graph_lib.Graph, name: Optional[str]
               ) -> graph_lib.Layer:
  convs = _conv_layers(graph)
  if not convs:
    raise ValueError("The model has no convolution layer to tap.")
  if name is None:
    return convs[-1]
  for layer in convs:
    if layer.name == name:
      return layer
  if name not in graph.taps:
    raise core.unknown_tap(name, graph)
  raise ValueError(
      f"`layer` (={name!r}) must name a convolution layer (its input is "
      f"unfolded); the model's convolution layers are: "
      f"{', '.join(l.name for l in convs)}.")


def _conv_source(graph: graph_lib.Graph, layer: graph_lib.Layer
                 ) -> tuple[Optional[str], tuple[graph_lib.Node, ...]]:
  """The named value that the convolution's input is computed from (None:
  the model input) and the structural nodes between them, in order."""
  by_key = {t.key: t.name for t in graph.taps.values()}
  producer = {k: n for n in graph.nodes for k in n.outputs}
  on_path = {k for n in graph.nodes if n.on_path for k in n.outputs}
  key = graph.nodes[layer.node].inputs[layer.x_arg]
  chain = []
  while key != graph.x_key and key not in by_key:
    node = producer.get(key)
    path_in = [] if node is None else [r for r in node.inputs if isinstance(
        r, int) and (r in on_path or r == graph.x_key)]
    if node is None or node.role != "structural" or len(path_in) != 1 or any(
        isinstance(r, int) and r not in graph.consts and r != path_in[0]
        for r in node.inputs):
      raise ValueError(
          f"The input of convolution `{layer.name}` is not a named value of "
          "the model or a reshaping of one, so it cannot be unfolded; "
          f"named values: {', '.join(graph.taps)}.")
    chain.append(node)
    key = path_in[0]
  return by_key.get(key), tuple(reversed(chain))


def _replay(graph: graph_lib.Graph, chain: Sequence[graph_lib.Node],
            value: jax.Array) -> jax.Array:
  """`value` through the structural nodes of `chain` (each has one input
  on the path; the others are literals or constants)."""
  for node in chain:
    args = [r.value if isinstance(r, graph_lib.Lit) else
            graph.consts.get(r, value) for r in node.inputs]
    (value,) = _bind(node, args)
  return value


def patch_norms(graph: graph_lib.Graph, layer: graph_lib.Layer,
                x_in: jax.Array) -> jax.Array:
  """||unfold(x_in)_u||, (batch, h, w): the L2 norm of the input patch that
  convolution `layer` sees at each output location, with its own kernel
  size, strides, padding and dilations (one convolution of x_in^2 with
  ones)."""
  p = layer.eqn_params
  dn = p["dimension_numbers"]
  kernel = graph.avals[graph.nodes[layer.node].inputs[1]]
  shape = list(kernel.shape)
  shape[dn.rhs_spec[0]], shape[dn.rhs_spec[1]] = 1, x_in.shape[dn.lhs_spec[1]]
  sq = jax.lax.conv_general_dilated(
      x_in * x_in, jnp.ones(shape, x_in.dtype), p["window_strides"],
      p["padding"], p["lhs_dilation"], p["rhs_dilation"], dn)
  sq = jnp.take(sq, 0, axis=dn.out_spec[1])
  kept = [a for a in range(sq.ndim + 1) if a != dn.out_spec[1]]
  order = [kept.index(a) for a in (dn.out_spec[0],) + tuple(dn.out_spec[2:])]
  return jnp.sqrt(jnp.maximum(jnp.transpose(sq, order), 0))


class _Step(NamedTuple):
  recipe: Recipe
  tap: graph_lib.Tap
  layer: Optional[graph_lib.Layer] = None  # conv_input: the convolution
  source: Optional[str] = None  # conv_input: the value its input comes from
  chain: tuple = ()


def _resolve(graph: graph_lib.Graph, recipe: Recipe, name: Optional[str]
             ) -> list[_Step]:
  """The steps of one (recipe, layer) pair; `name` None: its default (the
  last convolution's activation, or the last convolution); "*": every
  convolution (for `combine_layers`)."""
  if recipe.conv_input:
    layers = (_conv_layers(graph) if name == "*" else
              [_find_conv(graph, name)])
    steps = []
    for layer in layers:
      source, chain = _conv_source(graph, layer)
      steps.append(_Step(recipe, graph.taps[layer.name], layer, source,
                         chain))
    return steps
  if name == "*":
    names = conv_activations(graph.taps)
  else:
    names = [conv_activations(graph.taps)[-1] if name is None else name]
  for n in names:
    if n not in graph.taps:
      raise core.unknown_tap(n, graph)
  return [_Step(recipe, graph.taps[n]) for n in names]


def _map(step: _Step, out: dict[str, Any], graph: graph_lib.Graph,
         x: jax.Array) -> jax.Array:
  g = out["grads"][step.tap.name]
  if step.recipe.conv_input:
    x_in = x if step.source is None else out["acts"][step.source]
    a = Norms(patch_norms(graph, step.layer, _replay(graph, step.chain,
                                                     x_in)))
  else:
    a = out["acts"][step.tap.name]
  m = step.recipe.aggregate(step.recipe.extract(a, g, step.tap), step.tap)
  if step.recipe.relu:
    m = jnp.maximum(m, 0)
  return upsample(m, step.tap, x)


@functools.partial(jax.jit, static_argnames=("fn", "plan", "combine"))
def _layer_maps(fn: Any, params: Any, x: jax.Array, t: jax.Array, *,
                plan: Plan, combine: Combine) -> tuple[jax.Array, jax.Array]:
  graph = core.model_graph(fn, params, x)
  steps = [s for recipe, name in plan for s in _resolve(graph, recipe, name)]
  taps = []
  for s in steps:
    for name in (s.tap.name, s.source):
      if name is not None and name not in taps:
        taps.append(name)
  out = core.backward(fn, params, x, t, taps=tuple(taps))
  maps = [_map(s, out, graph, x) for s in steps]
  m = maps[0] if combine is None else combine(maps)
  return core.nan_where_invalid(m, out["valid"]), out["logits"]


def layer_maps(model: Any, variables: Any, x: ArrayLike, target: Any, *,
               plan: Plan, combine: Combine = None) -> jax.Array:
  """The maps of `plan`'s (recipe, layer) pairs from one forward and one
  backward pass, each upsampled to `x`'s shape (bilinear, broadcast over
  channels), and combined with `combine(maps)` (None: the one map).

  Raises:
    ValueError: for an invalid target or input, an unknown layer (the
      message lists the known ones) or a layer without two spatial axes.
  """
  fn, params, x, t = core.prepare(model, variables, x, target)
  m, logits = _layer_maps(fn, params, x, t, plan=plan, combine=combine)
  core.check_range(target, t, logits.shape[-1])
  return m


def method_recipe(method: Any) -> Optional[Recipe]:
  """The `Recipe` of a method of this family (None for other methods)."""
  return getattr(method, "recipe", None)


ALL = "*"  # `_resolve`'s name for "every convolution" (combine_layers)


def check_layer(layer: Any) -> None:
  """Raises a ValueError unless `layer` is None or a layer's name."""
  if layer is not None and (not isinstance(layer, str) or layer == ALL):
    raise ValueError(
        f"`layer` (={layer!r}) must be None (the default layer) or the name "
        "of a layer or activation (`sr_jax.attribution.layers(model, "
        "variables, x)` lists them).")


def one_layer(recipe: Recipe, model: Any, variables: Any, x: ArrayLike,
              target: Any, layer: Optional[str]) -> jax.Array:
  """The map of `recipe` at `layer` (None: its default), shaped like x."""
  check_layer(layer)
  return layer_maps(model, variables, x, target, plan=((recipe, layer),))
