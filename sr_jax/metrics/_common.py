"""Helpers the measures share: checked maps and masks, per-image loops."""

from __future__ import annotations

from typing import Callable, Union

import jax
import numpy as np

from sr_jax.maps import as_map

Score = Union[float, np.ndarray]

__all__ = ["Score", "as_map", "as_mask", "check_plane", "map_and_mask",
           "per_image"]


def as_mask(x: jax.typing.ArrayLike, shape: tuple[int, ...], *,
            allow_empty: bool = False) -> np.ndarray:
  """`x` as a boolean mask of `shape`; empty masks raise unless allowed."""
  m = np.asarray(x)
  if m.shape != shape:
    raise ValueError(
        f"`mask` (shape={m.shape}) must have the shape of `map` (={shape}); "
        "reduce a map's channels first, e.g. `map.sum(-1)`.")
  if m.dtype != bool:
    if not np.isin(m, (0, 1)).all():
      raise ValueError(
          f"`mask` (dtype={m.dtype}) must be boolean or hold only 0 and 1.")
    m = m.astype(bool)
  if not allow_empty and not m.reshape(
      m.shape[0] if m.ndim == 3 else 1, -1).any(axis=1).all():
    raise ValueError("`mask` is empty (no True pixel) for at least one image.")
  return m


def per_image(fn: Callable[..., float], *arrays: np.ndarray) -> Score:
  """fn on one HxW set of arrays, or stacked over a leading batch axis."""
  if arrays[0].ndim == 2:
    return float(fn(*arrays))
  return np.array([fn(*items) for items in zip(*arrays)], np.float64)


def check_plane(a: np.ndarray, name: str) -> None:
  """Raises unless `a` is one HxW plane or a batch NxHxW."""
  if a.ndim not in (2, 3):
    raise ValueError(
        f"`{name}` (shape={a.shape}) must be HxW or a batch NxHxW.")


def map_and_mask(map: jax.typing.ArrayLike,  # pylint: disable=redefined-builtin
                 mask: jax.typing.ArrayLike, *,
                 allow_empty: bool = False) -> tuple[np.ndarray, np.ndarray]:
  """A checked float64 map (HxW or NxHxW) and a boolean mask of its shape."""
  m = as_map(map, "map")
  check_plane(m, "map")
  return m, as_mask(mask, m.shape, allow_empty=allow_empty)


def as_key(key: jax.typing.ArrayLike | int, name: str = "key") -> jax.Array:
  """A JAX PRNG key from a key (new or old style) or an int seed."""
  if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
    return jax.random.key(int(key))
  if isinstance(key, jax.Array) and (
      jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
      or (key.dtype == np.uint32 and key.shape == (2,))):
    return key
  raise ValueError(
      f"`{name}` (={key!r}) must be a JAX PRNG key (jax.random.key(seed)) or "
      "an int seed.")
