"""Every kind of JAX model as one thing: a function `f(params, x)` and `params`.

A model is one of
  * a Flax linen `Module`, with `variables` its variable dict;
  * a Flax NNX `Module`, with `variables=None` (its state is split off);
  * an equinox `Module`, with `variables=None` (its arrays are partitioned
    off; equinox modules are called on one example, so the function vmaps
    the module over the batch, as equinox code does);
  * a function `f(params, x) -> logits`, with `variables=params`.

`as_function` turns each into a `ModelFn` (hashable, so it can be a static
argument of `jax.jit`) and its parameter pytree; nothing downstream knows which
kind it was. `layer_name` turns the pytree path of a parameter leaf into the
name of its layer ("features_0" for linen's `params/features_0/kernel`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Hashable, Sequence

import flax.linen as nn
import jax

KINDS = ("linen", "nnx", "equinox", "function")


@dataclasses.dataclass(frozen=True)
class ModelFn:
  """`f(params, x) -> logits` for one kind of model; hashable.

  Attributes:
    kind: one of `KINDS`.
    static: the non-array part: the linen module, NNX graph definition,
      equinox static tree or the user's function.
  """

  kind: str
  static: Hashable

  def __call__(self, params: Any, x: jax.Array) -> jax.Array:
    if self.kind == "linen":
      return self.static.apply(params, x)
    if self.kind == "nnx":
      from flax import nnx  # pylint: disable=import-outside-toplevel
      return nnx.merge(self.static, params)(x)
    if self.kind == "equinox":
      import equinox as eqx  # pylint: disable=import-outside-toplevel
      return jax.vmap(eqx.combine(params, self.static))(x)
    return self.static(params, x)


def _nnx_module_type():
  try:
    from flax import nnx  # pylint: disable=import-outside-toplevel
  except ImportError:  # pragma: no cover - flax always ships nnx here
    return None
  return nnx.Module


def _equinox_module_type():
  try:
    import equinox as eqx  # pylint: disable=import-outside-toplevel
  except ImportError:
    return None
  return eqx.Module


def model_kind(model: Any) -> str:
  """Which of `KINDS` `model` is; a ValueError says what is accepted."""
  if isinstance(model, nn.Module):
    return "linen"
  nnx_type, eqx_type = _nnx_module_type(), _equinox_module_type()
  if nnx_type is not None and isinstance(model, nnx_type):
    return "nnx"
  if eqx_type is not None and isinstance(model, eqx_type):
    return "equinox"
  if callable(model):
    return "function"
  raise ValueError(
      f"`model` (={type(model).__name__}) must be a Flax linen Module, a "
      "Flax NNX Module, an equinox Module or a function f(params, x) -> "
      "logits.")


def as_function(model: Any, variables: Any) -> tuple[ModelFn, Any]:
  """`(f, params)` with `f(params, x)` the model's logits.

  Args:
    model: a linen Module, an NNX Module, an equinox Module or a function
      `f(params, x)`.
    variables: the linen variables or the function's params; None for NNX
      and equinox modules, which carry their own arrays.

  Returns:
    A hashable `ModelFn` and the parameter pytree it takes.

  Raises:
    ValueError: for an unknown kind of model, or `variables` given to a
      module that carries its own (or missing for one that does not).

  Examples:
    >>> import jax.numpy as jnp
    >>> f, p = as_function(lambda p, x: x @ p["w"], {"w": jnp.ones((3, 2))})
    >>> f(p, jnp.ones((1, 3))).shape
    (1, 2)
  """
  if isinstance(model, ModelFn):
    return model, variables
  kind = model_kind(model)
  if kind in ("nnx", "equinox"):
    if variables is not None:
      raise ValueError(
          f"`variables` (={type(variables).__name__}) must be None for an "
          f"{'NNX' if kind == 'nnx' else 'equinox'} module, which carries "
          "its own arrays.")
    if kind == "nnx":
      from flax import nnx  # pylint: disable=import-outside-toplevel
      graphdef, state = nnx.split(model)
      return ModelFn(kind, graphdef), state
    import equinox as eqx  # pylint: disable=import-outside-toplevel
    params, static = eqx.partition(model, eqx.is_array)
    return ModelFn(kind, static), params
  if variables is None:
    raise ValueError(
        f"`variables` (=None) must be given for a "
        f"{'linen module' if kind == 'linen' else 'function f(params, x)'}: "
        "its variable dict or params pytree.")
  return ModelFn(kind, model), variables


def rebind(fn: ModelFn, params: Any) -> tuple[Any, Any]:
  """`(model, variables)` of `fn`'s kind holding `params`: the inverse of
  `as_function` (for methods that change parameters, e.g. meta-saliency).

  Examples:
    >>> import jax.numpy as jnp
    >>> f, p = as_function(lambda p, x: x * p, jnp.ones(()))
    >>> model, variables = rebind(f, 2 * p)
    >>> float(variables)
    2.0
  """
  if fn.kind == "nnx":
    from flax import nnx  # pylint: disable=import-outside-toplevel
    return nnx.merge(fn.static, params), None
  if fn.kind == "equinox":
    import equinox as eqx  # pylint: disable=import-outside-toplevel
    return eqx.combine(params, fn.static), None
  return fn.static, params


def _key_name(key: Any) -> str:
  for attr in ("key", "name", "idx"):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def path_names(path: Sequence[Any]) -> tuple[str, ...]:
  """The names of a pytree key path (dict keys, attributes, indices)."""
  return tuple(_key_name(k) for k in path)


def layer_name(kind: str, path: Sequence[Any]) -> str:
  """The layer a parameter leaf belongs to, from its pytree path.

  The leaf's own name (kernel, weight, bias, ...) is dropped, and so is the
  linen collection ("params") and NNX's "value" wrapper.

  Examples:
    >>> from jax.tree_util import DictKey
    >>> layer_name("linen", (DictKey("params"), DictKey("features_0"),
    ...                      DictKey("kernel")))
    'features_0'
  """
  names = list(path_names(path))
  if kind == "linen" and names:
    names = names[1:]
  while names and names[-1] in ("value", "raw_value"):
    names.pop()
  return "/".join(names[:-1]) if len(names) > 1 else "/".join(names)


def leaf_paths(params: Any) -> list[tuple[Any, ...]]:
  """The key path of every leaf of `params`, in flattening order."""
  return [p for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]


def check_callable(fn: Callable[..., Any], name: str) -> None:
  """Raises a ValueError unless `fn` is callable."""
  if not callable(fn):
    raise ValueError(f"`{name}` (={fn!r}) must be callable.")
