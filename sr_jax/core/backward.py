"""The shared backward pass of every method: targets, inputs, one forward and
one backward over the model (traced graph with rules, or plain), and taps.

Targets. `target` is None (each example's argmax), an int, or one int per
example. A concrete target is checked here, with one message. A target that
is traced by the caller's `jit` cannot be checked before the computation
runs: an out-of-range traced target gives a map of NaNs for that example,
never a silent map of zeros.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from sr_jax.core import graph as graph_lib
from sr_jax.core.interpret import Rules, evaluate
from sr_jax.core.models import ModelFn, as_function

Target = Union[None, int, ArrayLike]


def target_message(target: Any, batch: int, num_classes: Optional[int]
                   ) -> str:
  """The one message for an invalid target."""
  bound = f"in [0, {num_classes})" if num_classes else ">= 0"
  if hasattr(target, "shape") and not isinstance(target, jax.core.Tracer):
    target = np.asarray(target).tolist()
  return (f"`target` (={target!r}) must be None (each example's argmax), an "
          f"int {bound}, or one such int per example (shape ({batch},)).")


def target_array(target: Target, batch: int,
                 num_classes: Optional[int] = None) -> jax.Array:
  """`target` as int32 of shape (batch,), -1 standing for "the argmax".

  A concrete target is checked (type, shape, range when `num_classes` is
  known); a traced one is taken as it is (see the module docstring).

  Raises:
    ValueError: for an invalid concrete target.

  Examples:
    >>> target_array(None, 2).tolist(), target_array(3, 2).tolist()
    ([-1, -1], [3, 3])
  """
  if target is None:
    return jnp.full((batch,), -1, jnp.int32)
  if isinstance(target, jax.core.Tracer):
    t = jnp.asarray(target)
    if t.ndim > 1 or (t.ndim == 1 and t.shape[0] != batch) or not (
        jnp.issubdtype(t.dtype, jnp.integer)):
      raise ValueError(target_message(target, batch, num_classes))
    return jnp.broadcast_to(t, (batch,)).astype(jnp.int32)
  t = np.asarray(target)
  ok = (np.issubdtype(t.dtype, np.integer) and t.ndim <= 1
        and (t.ndim == 0 or t.shape == (batch,)) and np.all(t >= 0)
        and (num_classes is None or np.all(t < num_classes)))
  if not ok:
    raise ValueError(target_message(target, batch, num_classes))
  return jnp.broadcast_to(jnp.asarray(t, jnp.int32), (batch,))


def check_range(target: Target, t: jax.Array, num_classes: int) -> None:
  """Raises the target message when a concrete `t` is >= `num_classes`."""
  if isinstance(t, jax.core.Tracer):
    return
  if np.any(np.asarray(t) >= num_classes):
    raise ValueError(target_message(target, t.shape[0], num_classes))


def resolve(t: jax.Array, logits: jax.Array) -> tuple[jax.Array, jax.Array]:
  """`(targets, valid)`: -1 replaced by the argmax, and which are in range."""
  t = jnp.where(t < 0, jnp.argmax(logits, axis=-1).astype(t.dtype), t)
  return t, (t >= 0) & (t < logits.shape[-1])


def nan_where_invalid(m: jax.Array, valid: jax.Array) -> jax.Array:
  """NaN for the examples whose (traced) target was out of range."""
  shape = (-1,) + (1,) * (m.ndim - 1)
  return jnp.where(valid.reshape(shape), m, jnp.nan).astype(m.dtype)


def check_input(x: ArrayLike, name: str = "x") -> jax.Array:
  """`x` as a floating array with a batch axis; non-finite values refused.

  Raises:
    ValueError: for a scalar, a non-float array, or NaN/inf entries (the
      message gives their count).
  """
  x = jnp.asarray(x)
  if x.ndim < 2:
    raise ValueError(
        f"`{name}` (shape={x.shape}) must be a batch, e.g. NHWC "
        "(1, 224, 224, 3).")
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise ValueError(
        f"`{name}` (dtype={x.dtype}) must be a float array (the model's "
        "normalized input).")
  if not isinstance(x, jax.core.Tracer):
    bad = int(np.size(x) - np.count_nonzero(np.isfinite(np.asarray(x))))
    if bad:
      raise ValueError(
          f"`{name}` has {bad} non-finite value{'s' if bad > 1 else ''} (NaN "
          f"or inf) of {np.size(x)}; explanations need finite input.")
  return x


def unknown_tap(name: str, graph: graph_lib.Graph, what: str = "layer"
                ) -> ValueError:
  return ValueError(
      f"Unknown `{what}` (={name!r}); the model's named layers and "
      f"activations are: {', '.join(graph.taps)}.")


def model_graph(fn: ModelFn, params: Any, x: Any) -> graph_lib.Graph:
  """The traced graph of `fn(params, x)`."""
  return graph_lib.trace(fn, params, x, kind=fn.kind)


def layers(model: Any, variables: Any, x: ArrayLike) -> dict[str, graph_lib.Tap]:
  """The named values a method can tap, for this model and input shape.

  Examples:
    >>> import sr_jax
    >>> model, v = sr_jax.load_model("vgg_tiny")
    >>> names = layers(model, v, jnp.zeros((1, 32, 32, 3)))
    >>> [n for n in names][:3]
    ['features_0', 'features_0/relu', 'features_2']
  """
  fn, params = as_function(model, variables)
  x = jnp.asarray(x)
  return model_graph(fn, params, jax.ShapeDtypeStruct(x.shape, x.dtype)).taps


@functools.partial(jax.jit, static_argnames=("fn",))
def logits(fn: ModelFn, params: Any, x: jax.Array) -> jax.Array:
  """The model's logits, jitted (static model function)."""
  return fn(params, x)


def onehot_start(logits: jax.Array, t: jax.Array) -> jax.Array:
  """Cotangent of the gradient family: one at each target logit."""
  return jax.nn.one_hot(t, logits.shape[-1], dtype=logits.dtype)


def logit_start(logits: jax.Array, t: jax.Array) -> jax.Array:
  """Cotangent of LRP: the target logit itself (relevance starts there)."""
  return jax.lax.stop_gradient(onehot_start(logits, t) * logits)


@functools.partial(jax.jit, static_argnames=("fn", "rules", "taps", "start"))
def backward(fn: ModelFn, params: Any, x: jax.Array, t: jax.Array, *,
             rules: Rules = Rules(), taps: tuple[str, ...] = (),
             start: Callable[[jax.Array, jax.Array], jax.Array] = onehot_start
             ) -> dict[str, Any]:
  """One forward and one backward pass of `fn` under `rules`.

  Args:
    fn: the model function (static).
    params: its parameters.
    x: the input batch.
    t: int32 targets (batch,), -1 for the argmax.
    rules: the method's backward rules (static; empty: the gradient).
    taps: names of values to read, with their gradients (static).
    start: `(logits, targets) -> output cotangent` (static).

  Returns:
    A dict with "grad" (the input cotangent, shaped like x), "logits",
    "target", "valid", "acts" and "grads" (the tapped values and their
    gradients, by name).
  """
  plain = rules == Rules() and not taps
  if plain:
    def forward(inp, pert):
      del pert
      return fn(params, inp), {}
    zeros: dict[str, jax.Array] = {}
  else:
    graph = model_graph(fn, params, x)
    for name in taps:
      if name not in graph.taps:
        raise unknown_tap(name, graph)
    zeros = {n: jnp.zeros(graph.taps[n].shape, x.dtype) for n in taps}

    def forward(inp, pert):
      return evaluate(graph, params, inp, rules=rules, taps=taps,
                      perturbations=pert)
  logits, vjp, acts = jax.vjp(forward, x, zeros, has_aux=True)
  if logits.ndim != 2 or logits.shape[0] != x.shape[0]:
    raise ValueError(
        f"The model's output (shape={logits.shape}) must be logits of shape "
        f"(batch, classes) = ({x.shape[0]}, C).")
  target, valid = resolve(t, logits)
  g_x, g_taps = vjp(start(logits, jnp.clip(target, 0, logits.shape[-1] - 1)))
  return {"grad": g_x, "logits": logits, "target": target, "valid": valid,
          "acts": acts, "grads": g_taps}


def prepare(model: Any, variables: Any, x: ArrayLike, target: Target
            ) -> tuple[ModelFn, Any, jax.Array, jax.Array]:
  """`(fn, params, x, t)`: the model as a function, the checked input and
  the target array."""
  fn, params = as_function(model, variables)
  x = check_input(x)
  return fn, params, x, target_array(target, x.shape[0])


def run(model: Any, variables: Any, x: ArrayLike, target: Target, *,
        rules: Rules = Rules(), taps: Sequence[str] = (),
        start: Callable[[jax.Array, jax.Array], jax.Array] = onehot_start
        ) -> dict[str, Any]:
  """`backward` for any kind of model, with the target checked."""
  fn, params, x, t = prepare(model, variables, x, target)
  out = backward(fn, params, x, t, rules=rules, taps=tuple(taps), start=start)
  check_range(target, t, out["logits"].shape[-1])
  return out
