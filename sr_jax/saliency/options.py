"""Options of the context-aware saliency kernel and the static plan they give.

`Options` holds the algorithm's constants (validated, hashable); `make_plan`
turns them and an input size into every static shape the jitted kernel needs
(working size, per-scale sizes, pyramid levels), checking on the way that the
image is large enough and that `k` does not exceed the candidates.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from sr_jax.saliency import resize as rs

_BORDERS = ("zero", "edge")
_OUTPUT_SIZES = ("input", "working")


@dataclasses.dataclass(frozen=True)
class Options:
  """The constants of the algorithm; see `sr_jax.saliency.context_aware`."""

  max_side: int | None = 250
  scales: tuple[float, ...] = (1.0, 0.8, 0.5, 0.3)
  half_sizes: tuple[int, ...] = (3, 2, 1, 1)
  candidate_steps: tuple[int, ...] | None = None
  pyramid: tuple[float, ...] = (1.0, 0.5, 0.25)
  min_pyramid_scale: float = 0.2
  c: float = 3.0
  k: int = 64
  reference_area: float = 49.0
  focus_threshold: float = 0.8
  border: str = "zero"
  block_size: int = 512
  output_size: str = "input"
  num_devices: int | None = None

  @classmethod
  def create(cls, **options) -> "Options":
    """Validated options from keyword arguments (unknown names: TypeError)."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - names)
    if unknown:
      raise TypeError(
          f"Unknown option(s) {unknown}; allowed: {sorted(names)}.")
    for key in ("scales", "half_sizes", "pyramid"):
      if key in options:
        options[key] = _as_tuple(key, options[key])
    if options.get("candidate_steps") is not None:
      options["candidate_steps"] = _as_tuple("candidate_steps",
                                             options["candidate_steps"])
    for key in ("scales", "pyramid"):
      if key in options:
        options[key] = tuple(_as_float(key, v) for v in options[key])
    for key in ("min_pyramid_scale", "c", "focus_threshold", "reference_area"):
      if key in options:
        options[key] = _as_float(key, options[key])
    opts = cls(**options)
    opts.validate()
    return opts

  def validate(self) -> None:
    """Raises ValueError naming the first invalid option."""
    if self.max_side is not None and not _is_int(self.max_side, 1):
      raise ValueError(
          f"`max_side` (={self.max_side!r}) must be an int >= 1 or None.")
    if not self.scales or any(not s > 0 for s in self.scales):
      raise ValueError(
          f"`scales` (={self.scales}) must be a non-empty tuple of "
          "positive numbers.")
    if len(self.half_sizes) != len(self.scales) or not all(
        _is_int(h, 1) for h in self.half_sizes):
      raise ValueError(
          f"`half_sizes` (={self.half_sizes}) must hold one int >= 1 per "
          f"scale ({len(self.scales)}).")
    if self.candidate_steps is not None and (
        len(self.candidate_steps) != len(self.scales)
        or not all(_is_int(t, 1) for t in self.candidate_steps)):
      raise ValueError(
          f"`candidate_steps` (={self.candidate_steps}) must be None (the "
          f"half-sizes) or hold one int >= 1 per scale ({len(self.scales)}).")
    if not self.pyramid or any(not 0 < s <= 1 for s in self.pyramid):
      raise ValueError(
          f"`pyramid` (={self.pyramid}) must be a non-empty tuple of "
          "numbers in (0, 1].")
    if not self.min_pyramid_scale >= 0:
      raise ValueError(
          f"`min_pyramid_scale` (={self.min_pyramid_scale}) must be >= 0.")
    if not self.c >= 0:
      raise ValueError(f"`c` (={self.c}) must be >= 0.")
    if not _is_int(self.k, 1):
      raise ValueError(f"`k` (={self.k!r}) must be an int >= 1.")
    if not self.reference_area > 0:
      raise ValueError(
          f"`reference_area` (={self.reference_area}) must be > 0.")
    if not 0 <= self.focus_threshold <= 1:
      raise ValueError(
          f"`focus_threshold` (={self.focus_threshold}) must be in [0, 1].")
    if self.border not in _BORDERS:
      raise ValueError(
          f"`border` (={self.border!r}) must be one of {_BORDERS}.")
    if not _is_int(self.block_size, 1):
      raise ValueError(
          f"`block_size` (={self.block_size!r}) must be an int >= 1.")
    if self.num_devices is not None and not _is_int(self.num_devices, 1):
      raise ValueError(
          f"`num_devices` (={self.num_devices!r}) must be None or an int "
          ">= 1.")
    if self.output_size not in _OUTPUT_SIZES:
      raise ValueError(
          f"`output_size` (={self.output_size!r}) must be one of "
          f"{_OUTPUT_SIZES}.")


@dataclasses.dataclass(frozen=True)
class ScalePlan:
  """Static sizes of one scale: its image, half-size and pyramid levels."""

  scale: float
  half_size: int
  step: int  # of the candidate grid
  shape: tuple[int, int]
  levels: tuple[tuple[float, tuple[int, int]], ...]  # (s, shape) per level
  n_candidates: int


@dataclasses.dataclass(frozen=True)
class Plan:
  """Every static shape of one run (hashable: the jit cache key)."""

  options: Options
  input_shape: tuple[int, int]
  working_shape: tuple[int, int]
  scales: tuple[ScalePlan, ...]


def grid_length(length: int, half: int, step: int) -> int:
  """Candidate patch centres along one axis of `length` pixels: h, h + step,
  ... with the (2h+1)-pixel patch inside (0 if it does not fit)."""
  return max((length - 2 * half - 1) // step + 1, 0)


def grid_count(shape: tuple[int, int], half: int, step: int) -> int:
  """Number of candidate patches (grid step `step`) fully inside `shape`."""
  return grid_length(shape[0], half, step) * grid_length(shape[1], half, step)


def make_plan(input_shape: Sequence[int], options: Options) -> Plan:
  """Static sizes for an input of `input_shape` (H, W); validates them.

  Pyramid levels smaller than a patch contribute no candidates and are left
  out.

  Raises:
    ValueError: if a scale's image is smaller than its patch, or `k` exceeds
      the number of candidates at some scale.
  """
  height, width = (int(n) for n in input_shape)
  working = rs.working_shape(height, width, options.max_side)
  scales = []
  steps = options.candidate_steps or options.half_sizes
  for r, h, step in zip(options.scales, options.half_sizes, steps):
    shape = rs.scaled_shape(working, r)
    size = 2 * h + 1
    if min(shape) < size:
      raise ValueError(
          f"The image ({height}x{width}, {working[0]}x{working[1]} after "
          f"resizing to `max_side`={options.max_side}) is {shape[0]}x"
          f"{shape[1]} at scale {r}, smaller than its {size}x{size} patch; "
          "use a larger image or `max_side`, or smaller `scales`/"
          "`half_sizes`.")
    levels = []
    for s in dict.fromkeys(float(s) for s in options.pyramid):
      level = shape if s == 1 else rs.scaled_shape(working, r * s)
      if (r * s >= options.min_pyramid_scale - 1e-9
          and grid_count(level, h, step) > 0):
        levels.append((s, level))
    n = sum(grid_count(level, h, step) for _, level in levels)
    if options.k > n:
      raise ValueError(
          f"`k` (={options.k}) must be <= the number of candidates (={n}) "
          f"at scale {r} ({shape[0]}x{shape[1]} px, {h}-px half-size); "
          "use a smaller `k` or a larger image.")
    scales.append(ScalePlan(float(r), int(h), int(step), shape, tuple(levels),
                            n))
  return Plan(options, (height, width), working, tuple(scales))


def _as_tuple(name: str, value) -> tuple:
  try:
    return tuple(value)
  except TypeError:
    raise ValueError(f"`{name}` (={value!r}) must be a sequence.") from None


def _as_float(name: str, value) -> float:
  """`value` as a float (NumPy scalars too); bools, strings...: ValueError."""
  if not isinstance(value, (bool, str, bytes)):
    try:
      return float(value)
    except (TypeError, ValueError):
      pass
  raise ValueError(f"`{name}` (={value!r}) must be a number.")


def _is_int(value, minimum: int) -> bool:
  return (isinstance(value, int) and not isinstance(value, bool)
          and value >= minimum)
