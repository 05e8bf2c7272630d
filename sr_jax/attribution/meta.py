"""Meta-saliency (Rebuffi et al., CVPR 2020, Sec. 5): any method on a model
fine-tuned for one step on the image itself.

`meta(method, learning_rate=..., negate=...)` returns a method with the same
contract. For each example it takes one SGD step on all the model's
parameters (the inexact leaves of its parameter pytree; linen's running
statistics and NNX's `BatchStat`s and RNG state are not parameters) with the
cross-entropy of the target class, rebinds the updated parameters into a
model of the same kind (`sr_jax.core.rebind`) and computes `method` there.
`negate=True` steps up the loss instead. The caller's variables are JAX
values and are never modified; with learning rate 0 the result is the
wrapped method's. Each example gets its own step (one after the other), so
a batch gives the maps of its examples one at a time.
"""

from __future__ import annotations

import functools
from typing import Any, Union

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from sr_jax.attribution._core import Method, get_method
from sr_jax.attribution.smoothgrad import _items, fixed_target  # pylint: disable=protected-access
from sr_jax.core import backward as core
from sr_jax.core.backward import Target
from sr_jax.core.models import ModelFn, as_function, rebind


def trainable(fn: ModelFn, params: Any) -> tuple[bool, ...]:
  """For each leaf of `params` (flattening order), whether it is a
  parameter that the step updates."""
  leaves = jax.tree_util.tree_flatten_with_path(params)[0]
  inexact = [jnp.issubdtype(jnp.result_type(v), jnp.inexact)
             for _, v in leaves]
  if fn.kind == "nnx":
    from flax import nnx  # pylint: disable=import-outside-toplevel
    kinds = jax.tree_util.tree_leaves(
        params, is_leaf=lambda v: isinstance(v, nnx.Variable))
    return tuple(i and isinstance(v, nnx.Param) for i, v in zip(inexact,
                                                              kinds))
  if fn.kind == "linen" and isinstance(params, dict) and "params" in params:
    return tuple(i and getattr(p[0], "key", None) == "params"
                 for i, (p, _) in zip(inexact, leaves))
  return tuple(inexact)


def _step(fn: ModelFn, mask: tuple[bool, ...], rate: float, params: Any,
          x: jax.Array, t: jax.Array) -> Any:
  """`params` after one step of `rate` times the gradient of the target's
  cross-entropy (rate < 0: ascent)."""
  leaves, treedef = jax.tree_util.tree_flatten(params)
  free = [l for l, m in zip(leaves, mask) if m]

  def loss(free):
    it = iter(free)
    full = [next(it) if m else l for l, m in zip(leaves, mask)]
    logits = fn(jax.tree_util.tree_unflatten(treedef, full), x)
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.take_along_axis(logp, t[:, None], axis=-1).sum()

  grads = iter(jax.grad(loss)(free))
  new = [l - (rate * next(grads)).astype(l.dtype) if m else l
         for l, m in zip(leaves, mask)]
  return jax.tree_util.tree_unflatten(treedef, new)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4))
def _meta_one(fn, mask, method, options, rate, params, x, t):
  """One example (batch 1): the step, then the method."""
  model, variables = rebind(fn, _step(fn, mask, rate, params, x, t))
  return method(model, variables, x, target=t, **dict(options))


def meta(method: Union[str, Method], *, learning_rate: float = 2.5e-3,
         negate: bool = False) -> Method:
  """`method` computed after one SGD step on the example (meta-saliency).

  Args:
    method: a registered name or a method function.
    learning_rate: the step size (>= 0); 0 gives `method` itself.
    negate: step up the cross-entropy instead of down.

  Returns:
    A method `fn(model, variables, x, *, target=None, **options)`, the
    options being `method`'s (hashable values).

  Raises:
    ValueError: for an unknown method, a negative or non-numeric learning
      rate, or a non-bool `negate`.

  Examples:
    >>> import jax.numpy as jnp
    >>> f = lambda p, x: x.reshape(x.shape[0], -1) @ p
    >>> m = meta("gradient", learning_rate=0.0)
    >>> m(f, jnp.eye(3), jnp.ones((1, 1, 1, 3)), target=1).ravel().tolist()
    [0.0, 1.0, 0.0]
  """
  fn = get_method(method)
  if isinstance(learning_rate, bool) or not isinstance(
      learning_rate, (int, float)) or not learning_rate >= 0:
    raise ValueError(f"`learning_rate` (={learning_rate!r}) must be a "
                     "number >= 0.")
  if not isinstance(negate, bool):
    raise ValueError(f"`negate` (={negate!r}) must be True or False.")
  rate = -float(learning_rate) if negate else float(learning_rate)

  @functools.wraps(fn)
  def wrapped(model: Any, variables: Any, x: ArrayLike, *,
              target: Target = None, **options: Any) -> jax.Array:
    x = core.check_input(x)
    t = fixed_target(model, variables, x, target)
    mfn, params = as_function(model, variables)
    mask, items = trainable(mfn, params), _items(options)
    # One jitted call per example (compiled once): on XLA:CPU a `lax.map`
    # over the examples ran ~9x slower (AlexNet, batch 1).
    return jnp.concatenate([
        _meta_one(mfn, mask, fn, items, rate, params, x[i:i + 1],
                  t[i:i + 1]) for i in range(x.shape[0])])
  return wrapped
