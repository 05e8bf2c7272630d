"""`load_model`, the one entry point to a model with its variables.

This small module joins the two halves that must not know each other: the
models (`sr_jax.models.registry`) and the weight files (`sr_jax.weights`,
which reads shapes from the table of architectures, `sr_jax.archs`). Imports
run one way: loading -> weights -> archs, and loading -> registry -> archs.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Callable, Optional, Union

import flax.linen as nn
import jax
import jax.numpy as jnp

from sr_jax import weights as weights_lib
from sr_jax.models.registry import ArchSpec, get_arch

PathLike = Union[str, os.PathLike]


def resolve_weights(arch: str, weights: Optional[PathLike]) -> Optional[str]:
  """The weight file to use: `weights`, else the one shipped for `arch`.

  Args:
    arch: an architecture name.
    weights: a weight file, or None (or "") for the default.

  Returns:
    `weights` when given; else the path of the file shipped with the project
    for `arch` (`sr_jax.weights.bundled_path`); else None, which means random
    weights.

  Examples:
    >>> resolve_weights("vgg_tiny", "my.safetensors")
    'my.safetensors'
    >>> resolve_weights("vgg_tiny", None) is None  # ships no weights
    True
  """
  if weights:
    return weights
  bundled = weights_lib.bundled_path(arch)
  return None if bundled is None else os.fspath(bundled)


@functools.lru_cache(maxsize=64)
def _cached_init(spec: ArchSpec) -> Callable[[jax.Array, jax.Array], Any]:
  """One jitted `init` per architecture, so repeated loads compile once."""
  return jax.jit(spec.module().init)


def load_model(
    name: str,
    weights: Optional[PathLike] = None,
    *,
    key: Optional[jax.Array] = None,
) -> tuple[nn.Module, Any]:
  """Builds architecture `name` and returns `(model, variables)`.

  Args:
    name: an architecture in `ARCHS` (e.g. "vgg16", "alexnet", "vgg_face").
    weights: a safetensors file written by `sr_jax.weights` (validated tensor
      by tensor against the architecture), or None. With None, an
      architecture that ships weights with the project (`demo_vgg`, see
      `resolve_weights`) loads them unless `key` is given; otherwise the
      parameters are randomly initialised from `key`.
    key: PRNG key for random initialisation; defaults to `PRNGKey(0)`.

  Returns:
    The Flax module and its variables, ready for `model.apply(variables, x)`.

  Raises:
    ValueError: for an unknown architecture, or a file that does not fit it.
    FileNotFoundError: if `weights` is not a file.

  Examples:
    >>> model, params = load_model("vgg_tiny", key=jax.random.PRNGKey(1))
    >>> model.apply(params, jnp.zeros((1, 32, 32, 3))).shape
    (1, 10)
  """
  spec = get_arch(name)
  if weights is None and key is None:
    weights = resolve_weights(name, None)
  if weights is None:
    key = jax.random.PRNGKey(0) if key is None else key
    x = jnp.zeros((1, spec.input_size, spec.input_size, 3), jnp.float32)
    return spec.module(), _cached_init(spec)(key, x)
  return weights_lib.load(weights, arch=name)
