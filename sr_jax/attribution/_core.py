"""What every attribution method shares: the registry, and turning layer
values into input-sized maps. The backward pass, targets and taps are in
`sr_jax.core.backward`.

A method is `fn(model, variables, x, *, target=None, **options) -> jax.Array`
with `x` an NHWC batch and the result shaped like `x` (layer-resolution maps
are upsampled bilinearly to the input and broadcast over channels). Methods
register themselves by name in `METHODS` (`register`); `get_method(name)`
returns one.
"""

from __future__ import annotations

from typing import Any, Callable, Union

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from sr_jax.core import graph as graph_lib
from sr_jax.core.backward import layers

Method = Callable[..., jax.Array]

METHODS: dict[str, Method] = {}


def register(name: str) -> Callable[[Method], Method]:
  """Decorator adding an attribution method to `METHODS` under `name`."""
  def add(fn: Method) -> Method:
    METHODS[name] = fn
    return fn
  return add


def get_method(name: Union[str, Method]) -> Method:
  """The method registered as `name` (a callable is returned as it is).

  Raises:
    ValueError: for an unknown name; the message lists the known ones.

  Examples:
    >>> get_method("gradient").__name__
    'gradient'
  """
  if callable(name):
    return name
  if not isinstance(name, str) or name not in METHODS:
    raise ValueError(
        f"Unknown attribution `method` (={name!r}); known methods: "
        f"{', '.join(sorted(METHODS))}.")
  return METHODS[name]


def upsample(m: jax.Array, tap: graph_lib.Tap, like: jax.Array) -> jax.Array:
  """A (batch, h, w) map resized bilinearly to `like` (NHWC), broadcast over
  its channels."""
  n, h, w = like.shape[0], like.shape[1], like.shape[2]
  del tap
  up = jax.image.resize(m.astype(like.dtype), (n, h, w), "bilinear")
  return jnp.broadcast_to(up[..., None], like.shape)


def spatial_map(values: jax.Array, tap: graph_lib.Tap,
                reduce: Callable[[jax.Array, int], jax.Array]) -> jax.Array:
  """`reduce(values, channel_axis)` as (batch, h, w) at the tap's layout.

  Raises:
    ValueError: when the tapped value has no two spatial axes.
  """
  if tap.feature_axis is None or len(tap.spatial_axes) != 2:
    raise ValueError(
        f"`layer` (={tap.name!r}, shape={tap.shape}) has no two spatial axes "
        "(it is not a convolutional feature map); choose a conv layer or the "
        "activation after one.")
  r = reduce(values, tap.feature_axis)
  kept = [a for a in range(values.ndim) if a != tap.feature_axis]
  order = [kept.index(0)] + [kept.index(a) for a in tap.spatial_axes]
  return jnp.transpose(r, order)


def conv_activations(taps: dict[str, graph_lib.Tap]) -> list[str]:
  """For each convolution layer, in forward order, the name of its
  activation (or of its output when no activation follows it).

  Raises:
    ValueError: when the model has no convolution layer.
  """
  convs = [t.name for t in taps.values() if t.kind == "conv"]
  if not convs:
    raise ValueError("The model has no convolution layer to tap.")
  out = []
  for conv in convs:
    after = [t.name for t in taps.values()
             if t.kind == "activation" and t.name.startswith(conv + "/")]
    out.append(after[0] if after else conv)
  return out


def default_conv_layer(model: Any, variables: Any, x: ArrayLike) -> str:
  """The name of the last convolution layer's activation (or output)."""
  return conv_activations(layers(model, variables, x))[-1]
