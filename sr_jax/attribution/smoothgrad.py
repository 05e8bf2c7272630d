"""SmoothGrad for any method (Smilkov et al. 2017).

`smooth(method, samples=..., noise_level=..., key=...)` averages `method`
over noisy copies of the input: Gaussian noise with standard deviation
`noise_level * (max - min)` of each example, the target fixed from the
clean input so every copy explains the same class; each sample's noise image
is shared by the examples of a batch, so a batch gives the maps of its
examples one at a time. It returns a method with
the same contract, so SmoothGrad over LRP, guided backprop or Grad-CAM comes
free. `smoothgrad` is the original: `smooth(gradient)`.
"""

from __future__ import annotations

import functools
from typing import Any, Union

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from sr_jax.attribution._core import Method, get_method, register
from sr_jax.core import backward as core
from sr_jax.core.backward import Target
from sr_jax.core.models import as_function

KeyLike = Union[jax.Array, int]


def as_key(key: KeyLike, name: str = "key") -> jax.Array:
  """A PRNG key from a key or an int seed."""
  if isinstance(key, (int,)) and not isinstance(key, bool):
    return jax.random.PRNGKey(key)
  key = jnp.asarray(key) if not jax.dtypes.issubdtype(
      getattr(key, "dtype", None), jax.dtypes.prng_key) else key
  if key.shape != (2,) and not jax.dtypes.issubdtype(key.dtype,
                                                     jax.dtypes.prng_key):
    raise ValueError(
        f"`{name}` (={key!r}) must be a PRNG key (jax.random.PRNGKey) or an "
        "int seed.")
  return key


def _check(samples: int, noise_level: float) -> None:
  if not isinstance(samples, int) or samples < 1:
    raise ValueError(f"`samples` (={samples}) must be >= 1 (an int).")
  if not noise_level >= 0:
    raise ValueError(f"`noise_level` (={noise_level}) must be >= 0.")


def fixed_target(model: Any, variables: Any, x: jax.Array,
                 target: Target) -> jax.Array:
  """The target as int32 per example, the argmax of the clean input's
  logits where `target` is None."""
  fn, params = as_function(model, variables)
  t = core.target_array(target, x.shape[0])
  out = core.logits(fn, params, x)
  core.check_range(target, t, out.shape[-1])
  return core.resolve(t, out)[0]


def smooth(method: Union[str, Method], *, samples: int = 25,
           noise_level: float = 0.15, key: KeyLike) -> Method:
  """`method` averaged over `samples` noisy copies of the input.

  Args:
    method: a registered name or a method function.
    samples: number of noisy copies (>= 1).
    noise_level: noise std as a fraction of each example's value range.
    key: PRNG key (or int seed) for the noise.

  Returns:
    A method `fn(model, variables, x, *, target=None, **options)`.

  Examples:
    >>> import jax.numpy as jnp
    >>> f = lambda p, x: x.reshape(x.shape[0], -1) @ p
    >>> sg = smooth("gradient", samples=4, noise_level=0.1, key=0)
    >>> sg(f, jnp.eye(3), jnp.ones((1, 1, 1, 3)), target=2).ravel().tolist()
    [0.0, 0.0, 1.0]
  """
  fn = get_method(method)
  _check(samples, noise_level)
  key = as_key(key)

  @functools.wraps(fn)
  def smoothed(model: Any, variables: Any, x: ArrayLike, *,
               target: Target = None, **options: Any) -> jax.Array:
    x = core.check_input(x)
    t = fixed_target(model, variables, x, target)
    mfn, params = as_function(model, variables)
    return _smoothed(mfn, fn, _items(options), samples, noise_level, params,
                     x, t, key)
  return smoothed


def _items(options: dict[str, Any]) -> tuple:
  """Options as a hashable, sorted tuple (a jit-static argument)."""
  try:
    items = tuple(sorted(options.items()))
    hash(items)
  except TypeError as err:
    raise ValueError(
        f"The method options {sorted(options)} must be hashable values "
        "(numbers, strings, tuples) to be smoothed.") from err
  return items


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4))
def _smoothed(mfn, fn, options, samples, noise_level, params, x, t, key):
  axes = tuple(range(1, x.ndim))
  sigma = noise_level * (x.max(axis=axes, keepdims=True)
                         - x.min(axis=axes, keepdims=True))

  def one(k):
    # One noise image per sample, shared by the examples: a batch gives the
    # maps of its examples one at a time.
    noisy = x + sigma * jax.random.normal(k, x.shape[1:], x.dtype)
    return fn(mfn, params, noisy, target=t, **dict(options))

  return jax.lax.map(one, jax.random.split(key, samples)).mean(axis=0)


@register("smoothgrad")
def smoothgrad(model: Any, variables: Any, x: ArrayLike, *, key: KeyLike,
               target: Target = None, samples: int = 25,
               noise_level: float = 0.15) -> jax.Array:
  """SmoothGrad: the gradient averaged over `samples` noisy inputs.

  Args:
    model, variables, x, target: as for `gradient`.
    key: PRNG key (or int seed) for the noise.
    samples: number of noisy copies (>= 1).
    noise_level: noise standard deviation as a fraction of each example's
      value range (max - min), as in Smilkov et al. 2017.

  Returns:
    The mean gradient, an array of `x.shape`.
  """
  return smooth("gradient", samples=samples, noise_level=noise_level,
                key=key)(model, variables, x, target=target)
