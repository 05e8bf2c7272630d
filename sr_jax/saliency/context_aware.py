"""Context-aware saliency (Goferman, Zelnik-Manor & Tal, TPAMI 2012) in JAX.

A pixel is salient when the patch around it is unlike the patches most
similar to it, measured by colour and damped by distance, at several scales;
then pixels near the most salient ones gain (the "immediate context").

Steps, each constant a keyword argument of `context_aware`:

1. Resize so that the larger side is `max_side` (bilinear, antialiased when
   shrinking; see `sr_jax.saliency.resize` for the exact convention).
2. Features: an HxWx3 image is converted from sRGB to CIE L*a*b* (D65) and
   each of L, a, b is min-max normalized to [0, 1]; an HxW image is one
   plane and an HxWxC image (C != 3) C planes, each normalized the same way.
   A constant plane becomes 0.
3. For each scale r in `scales` with half-size h in `half_sizes`: the
   feature image is resized by r (bilinear). Every pixel is a query patch of
   (2h+1)^2 pixels. Candidate patches lie on a grid with step t (t = h
   unless `candidate_steps` says otherwise: about 50% overlap; centres
   h, h + t, h + 2t, ... with the patch inside the image) in the pyramid levels
   r·s for s in `pyramid` with r·s >= `min_pyramid_scale`; the level s = 1
   is the query image itself, the others are resized from the working image
   (bicubic).
4. d = ||q - c|| / (1 + c·||p_q - p_c||): positions in pixels of the scale-r
   image divided by its larger side, candidates of other levels mapped to
   the query level by the half-pixel convention. The query's own grid patch
   is a candidate like any other.
5. S_r = 1 - exp(-mean(d over the k smallest) · A / (2h+1)^2), with
   A = `reference_area` = 49 (the area of the 7x7 patch at scale 1). With
   `border="zero"`, pixels closer than h to the border get S_r = 0; with
   `border="edge"` the image is edge-padded so that they have patches.
6. Each S_r is resized to the working size (bilinear) and the maps are
   averaged.
7. Immediate context: foci are the pixels with S >= `focus_threshold`·max S;
   D is the Euclidean distance transform to the nearest focus divided by its
   maximum (0 where that maximum is 0); S <- S·(1 - D).
8. The map is resized back to the input size (`output_size="input"`) or kept
   at the working size (`"working"`), and clipped to [0, 1].

Everything after input validation is one jitted function per input shape,
dtype and options, distances and distance transform included; memory is
bounded by `block_size` (see `sr_jax.saliency.knn`).

Several devices (`num_devices`, default all that JAX sees): within that one
function, the query patches of each scale are split evenly over the devices
(`jax.shard_map`; every device holds all candidates), and a batch whose size
is a multiple of the device count is split by image instead. On CPU several
devices let every core work (XLA runs `TopK`, gathers and the bisection on
one thread per device), and `sr_jax.runtime` gives JAX one per core
(`SR_JAX_CPU_DEVICES=1` for one: on one VM, two XLA:CPU computations
running at once gave some wrong maps, `benchmarks/xla_cpu_concurrency.py`
and tests/test_xla_cpu_concurrency.py). The split changes the distances only
by rounding (other block shapes: a few 1e-6; in float64 ~1e-10). Step 7
can enlarge that: a pixel whose saliency is within rounding of
`focus_threshold`·max may become a focus or stop being one, which moves the
distance transform around it (up to 5e-3 at ~3% of the pixels seen on a 224-px photograph).

Precision: uint8 and float32 input (and float16, bfloat16) is computed in
float32. float64 input under `jax_enable_x64` is computed in float64 at
every stage (resize weights, L*a*b*, patches, distances, the exact k-th
smallest on int64 bit patterns, the distance transform), and the map is
float64: the setting for exact comparisons with a float64 reference.
uint8 input stays float32 under `jax_enable_x64` too (its 8-bit values gain
little, and float32 is 5.4x faster at 250 px on a 2-core CPU: XLA:CPU's
float64 matrix products and `TopK` are 4-6x slower); pass `image / 255.0`
(float64) for the float64 path. Without `jax_enable_x64`, JAX has no
float64 and float64 input is computed in float32.

References:
  S. Goferman, L. Zelnik-Manor, A. Tal. Context-Aware Saliency Detection.
  IEEE TPAMI 34(10), 2012.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from sr_jax.saliency import resize as rs
from sr_jax.saliency.color import rgb_to_lab
from sr_jax.saliency.distance_transform import distance_transform
from sr_jax.saliency.knn import mean_knn_distance
from sr_jax.saliency.options import Options, Plan, grid_length, make_plan

__all__ = ["context_aware", "context_aware_batch"]

_AXIS = "devices"


def _features(image: jax.Array) -> jax.Array:
  """Step 2: Lab for 3 channels, then per-plane min-max normalization."""
  if image.shape[-1] == 3:
    image = rgb_to_lab(image)
  low = jnp.min(image, axis=(0, 1))
  span = jnp.max(image, axis=(0, 1)) - low
  safe = jnp.where(span > 0, span, 1.0)
  return jnp.where(span > 0, (image - low) / safe, 0.0)


def _patches(image: jax.Array, half: int, stride: int) -> jax.Array:
  """All (2h+1)^2 patches with the given stride, fully inside: (n, D)."""
  size = 2 * half + 1
  out = lax.conv_general_dilated_patches(
      image[None], (size, size), (stride, stride), "VALID",
      dimension_numbers=("NHWC", "OIHW", "NHWC"),
      precision=lax.Precision.HIGHEST)
  return out.reshape(-1, out.shape[-1])


def _grid(rows: np.ndarray, cols: np.ndarray, dtype: np.dtype) -> np.ndarray:
  """(len(rows)*len(cols), 2) (y, x) pairs of `dtype`, row-major."""
  yy, xx = np.meshgrid(rows, cols, indexing="ij")
  return np.stack([yy.ravel(), xx.ravel()], axis=1).astype(dtype)


def _split_queries(fn, mesh: Mesh, queries, query_pos, candidates,
                   candidate_pos) -> jax.Array:
  """`fn(queries, query_pos, candidates, candidate_pos)`, rows over `mesh`."""
  rows, pad = queries.shape[0], (-queries.shape[0]) % mesh.size
  queries = jnp.pad(queries, ((0, pad), (0, 0)))
  query_pos = np.pad(query_pos, ((0, pad), (0, 0)))
  rows_spec, whole = PartitionSpec(_AXIS), PartitionSpec()
  out = jax.shard_map(fn, mesh=mesh, in_specs=(rows_spec, rows_spec, whole,
                                               whole),
                      out_specs=rows_spec, check_vma=False)(
                          queries, query_pos, candidates, candidate_pos)
  return out[:rows]


def _scale_map(features: jax.Array, plan: Plan, index: int,
               mesh: Mesh | None) -> jax.Array:
  """Steps 3-5 for one scale: the single-scale map S_r at the scale's size."""
  opts, scale = plan.options, plan.scales[index]
  h, (height, width) = scale.half_size, scale.shape
  side, dtype = float(max(height, width)), np.dtype(features.dtype)
  query_image = rs.resize(features, scale.shape, "linear")

  candidates, positions = [], []
  step = scale.step
  for s, level_shape in scale.levels:
    level = (query_image if s == 1
             else rs.resize(features, level_shape, "cubic"))
    candidates.append(_patches(level, h, step))
    n_rows, n_cols = (grid_length(n, h, step) for n in level_shape)
    rows = rs.map_coordinates_back(h + step * np.arange(n_rows),
                                   level_shape[0], height)
    cols = rs.map_coordinates_back(h + step * np.arange(n_cols),
                                   level_shape[1], width)
    positions.append(_grid(rows, cols, dtype) / side)

  if opts.border == "edge":
    padded = jnp.pad(query_image, ((h, h), (h, h), (0, 0)), mode="edge")
    queries = _patches(padded, h, 1)
    q_rows, q_cols = np.arange(height), np.arange(width)
  else:
    queries = _patches(query_image, h, 1)
    q_rows, q_cols = np.arange(h, height - h), np.arange(h, width - h)
  knn = functools.partial(mean_knn_distance, k=opts.k, c=opts.c,
                          block_size=opts.block_size)
  args = (queries, _grid(q_rows, q_cols, dtype) / side,
          jnp.concatenate(candidates), np.concatenate(positions))
  mean_d = knn(*args) if mesh is None else _split_queries(knn, mesh, *args)
  area = (2 * h + 1) ** 2
  saliency = 1.0 - jnp.exp(-mean_d * (opts.reference_area / area))
  saliency = saliency.reshape(len(q_rows), len(q_cols))
  if opts.border == "zero":
    saliency = jnp.pad(saliency, h)
  return saliency


def _immediate_context(saliency: jax.Array, threshold: float) -> jax.Array:
  """Step 7: S·(1 - D), D the normalized distance to the nearest focus."""
  foci = saliency >= threshold * jnp.max(saliency)
  dist = distance_transform(foci, dtype=saliency.dtype)
  top = jnp.max(dist)
  dist = jnp.where(top > 0, dist / jnp.where(top > 0, top, 1.0), 0.0)
  return saliency * (1.0 - dist)


def _pipeline(image: jax.Array, plan: Plan, mesh: Mesh | None) -> jax.Array:
  """The jitted body: one (H, W, C) image, uint8, float32 or float64, to the
  map, computed in float32 (uint8, float32) or float64."""
  dtype = jnp.float32 if image.dtype == jnp.uint8 else image.dtype
  x = image.astype(dtype)
  if image.dtype == jnp.uint8:
    x = x / 255.0
  features = _features(rs.resize(x, plan.working_shape, "linear"))
  # Centring leaves every distance unchanged and shrinks the norms, so less
  # float32 cancellation in |q|^2 + |c|^2 - 2 q.c for near-identical patches.
  features = features - jnp.mean(features, axis=(0, 1))
  total = jnp.zeros(plan.working_shape, dtype)
  for index in range(len(plan.scales)):
    s_r = _scale_map(features, plan, index, mesh)
    total = total + rs.resize(s_r[..., None], plan.working_shape,
                              "linear")[..., 0]
  saliency = _immediate_context(total / len(plan.scales),
                                plan.options.focus_threshold)
  if plan.options.output_size == "input":
    saliency = rs.resize(saliency[..., None], plan.input_shape,
                         "linear")[..., 0]
  return jnp.clip(saliency, 0.0, 1.0)


@functools.partial(jax.jit, static_argnames=("plan", "mesh"))
def _single(image: jax.Array, plan: Plan, mesh: Mesh | None) -> jax.Array:
  return _pipeline(image, plan, mesh)


@functools.partial(jax.jit, static_argnames=("plan", "mesh"))
def _batch(images: jax.Array, plan: Plan, mesh: Mesh | None) -> jax.Array:
  """One image after the other (`lax.map`: the memory of one image, and the
  same program as `_single`), split by image over `mesh` when the batch
  divides evenly and by query patch otherwise."""
  if mesh is None or images.shape[0] % mesh.size:
    return lax.map(lambda x: _pipeline(x, plan, mesh), images)
  return jax.shard_map(
      lambda x: lax.map(lambda y: _pipeline(y, plan, None), x), mesh=mesh,
      in_specs=PartitionSpec(_AXIS), out_specs=PartitionSpec(_AXIS),
      check_vma=False)(images)


def _mesh(num_devices: int | None, traced: bool) -> Mesh | None:
  """A 1-D mesh over the first `num_devices` devices (None for one device).

  Inside a caller's `jit` (a traced input) the caller owns the placement, so
  no mesh is used unless `num_devices` asks for one.
  """
  devices = jax.local_devices()
  if num_devices is None:
    num_devices = 1 if traced else len(devices)
  if num_devices > len(devices):
    raise ValueError(
        f"`num_devices` (={num_devices}) must be <= the number of devices "
        f"JAX sees ({len(devices)}, {devices[0].platform}); for N CPU "
        "devices set SR_JAX_CPU_DEVICES=N (or XLA_FLAGS="
        "--xla_force_host_platform_device_count=N) before JAX starts "
        "(sr_jax.runtime).")
  if num_devices == 1:
    return None
  return Mesh(np.array(devices[:num_devices]), (_AXIS,))


def _run(fn, array: jax.Array, plan: Plan) -> jax.Array:
  """Runs the jitted `fn` on `array`, on the devices `plan` asks for.

  With several devices the input is replicated onto them, and the result is
  handed back on the default device, so callers see one ordinary array.
  """
  traced = isinstance(array, jax.core.Tracer)
  mesh = _mesh(plan.options.num_devices, traced)
  if mesh is None or traced:
    return fn(array, plan, mesh)
  array = jax.device_put(array, NamedSharding(mesh, PartitionSpec()))
  return jax.device_put(fn(array, plan, mesh), jax.local_devices()[0])


def _prepare(image, name: str, batched: bool) -> jax.Array:
  """Validates dtype, rank and (for concrete inputs) finiteness.

  Returns the input as a uint8, float32 or float64 array (float64 stays
  float64 under `jax_enable_x64`; other floats become float32) with a
  channel axis. Inside a caller's `jit`, values are unknown, so NaN/inf
  cannot be checked there.
  """
  if not isinstance(image, (jax.Array, np.ndarray)):
    image = np.asarray(image)
  dtype, shape = image.dtype, tuple(image.shape)
  if not (dtype == np.uint8 or jnp.issubdtype(dtype, jnp.floating)):
    raise TypeError(
        f"`{name}` (dtype={dtype}) must be uint8 or floating point.")
  lead = 1 if batched else 0
  if len(shape) not in (2 + lead, 3 + lead) or 0 in shape:
    want = "NxHxW or NxHxWxC" if batched else "HxW or HxWxC"
    raise ValueError(
        f"`{name}` (shape={shape}) must be a non-empty {want} array.")
  if dtype != np.uint8:
    work = np.dtype(jax.dtypes.canonicalize_dtype(
        np.float64 if dtype == np.float64 else np.float32))
    if not isinstance(image, jax.core.Tracer):
      values = np.asarray(image, work)
      finite = np.isfinite(values)
      if not finite.all():
        raise ValueError(
            f"`{name}` contains {finite.size - np.count_nonzero(finite)} "
            f"non-finite value(s) (first: {values[~finite][0]}); saliency "
            "needs finite input.")
    image = image.astype(work)
  image = jnp.asarray(image)
  return image[..., None] if len(shape) == 2 + lead else image


def context_aware(image: jax.typing.ArrayLike, **options) -> jax.Array:
  """Context-aware saliency map of one image.

  Args:
    image: uint8 (0..255) or float array, HxW (one feature plane, such as a
      relevance map) or HxWxC (C = 3: sRGB, floats in [0, 1]; otherwise C
      feature planes, e.g. RGBA is 4 planes). Must be finite (checked unless
      called on a tracer inside the caller's `jit`).
    **options: keyword-only constants of the algorithm (see the module
      docstring): `max_side=250` (None: no resize), `scales=(1.0, 0.8, 0.5,
      0.3)`, `half_sizes=(3, 2, 1, 1)`, `candidate_steps=None` (one grid
      step per scale; None: the half-sizes), `pyramid=(1.0, 0.5, 0.25)`,
      `min_pyramid_scale=0.2`, `c=3.0`, `k=64`, `reference_area=49.0`,
      `focus_threshold=0.8`,
      `border="zero"` or `"edge"`, `block_size=512` (queries per block and
      device: memory, not results), `output_size="input"` or `"working"`,
      `num_devices=None` (devices to split the work over; None: all that
      JAX sees, or 1 inside a caller's `jit`).

  Returns:
    HxW map in [0, 1] (at the working size with `output_size="working"`):
    float64 for float64 input under `jax_enable_x64`, float32 otherwise
    (see "Precision" in the module docstring).

  Raises:
    TypeError: for a dtype other than uint8 or floating point (bool, other
      integers, strings, ...), or unknown options.
    ValueError: for a wrong number of dimensions, NaN/inf values, an image
      smaller than a patch after resizing, `k` larger than the number of
      candidates at some scale, or invalid option values.

  Examples:
    >>> image = np.zeros((60, 80, 3), np.uint8); image[20:30, 30:40] = 255
    >>> s = context_aware(image, max_side=None)   # (60, 80), peak on the square
  """
  array = _prepare(image, "image", batched=False)
  plan = make_plan(array.shape[:2], Options.create(**options))
  return _run(_single, array, plan)


def context_aware_batch(images: jax.typing.ArrayLike,
                        **options) -> jax.Array:
  """`context_aware` over a stack of same-size images, in one jitted call.

  Args:
    images: NxHxW or NxHxWxC, uint8 or float (see `context_aware`).
    **options: as for `context_aware`. The images are processed one after
      the other (memory of one image per device), split over the devices
      by image when N is a multiple of their number.

  Returns:
    NxHxW maps in [0, 1], of the dtype `context_aware` gives; `result[i]`
    is `context_aware(images[i], **options)`: the same program when the
    images and the single call are split the same way (one device, or N not
    a multiple of the devices), otherwise equal up to rounding (which the
    focus threshold can enlarge, see the module docstring).

  Raises:
    TypeError, ValueError: as `context_aware`.
  """
  array = _prepare(images, "images", batched=True)
  plan = make_plan(array.shape[1:3], Options.create(**options))
  return _run(_batch, array, plan)
