"""Context-aware saliency: building blocks, the NumPy reference, properties,
errors.

Full-pipeline tests share a few input shapes and option sets, because each
new one is a new compilation (several seconds on 2 cores).
"""

import importlib
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from sr_jax.saliency import (context_aware, context_aware_batch,
                             distance_transform)
from sr_jax.saliency import knn, resize as rs
from sr_jax.saliency.options import Options, make_plan
from tests.reference import context_aware_np as ref

_module = importlib.import_module("sr_jax.saliency.context_aware")
SMALL = dict(max_side=48)  # with 36x48 inputs: no resize


def smooth_image(rng, height, width, channels, *, uint8=False):
  """Blurred noise in [0, 1] with one distinct rectangle."""
  x = ndimage.gaussian_filter(rng.random((height, width, channels)),
                              (2, 2, 0))
  x = (x - x.min()) / (x.max() - x.min())
  x[height // 3:height // 2, width // 4:width // 2] = np.linspace(
      0.9, 0.1, channels)
  return (x * 255).round().astype(np.uint8) if uint8 else x


# --- building blocks --------------------------------------------------------


@pytest.mark.parametrize("n_in,n_out", [(36, 29), (48, 11), (29, 36), (7, 7),
                                        (5, 12)])
@pytest.mark.parametrize("method", ["linear", "cubic"])
def test_resize_weights_match_jax_image_resize(rng, n_in, n_out, method):
  x = rng.random((n_in, 3, 1)).astype(np.float32)
  want = jax.image.resize(x, (n_out, 3, 1), method, antialias=True)
  got = rs.resize_weights(n_in, n_out, method) @ x[..., 0]
  # jax.image.resize computes its weights in float32 (a few ulp each).
  np.testing.assert_allclose(got, np.asarray(want)[..., 0], atol=4e-6)
  np.testing.assert_allclose(rs.resize_weights(n_in, n_out, method),
                             ref.resize_matrix(n_in, n_out, method),
                             atol=1e-7)


@pytest.mark.parametrize("size", [(31, 17), (64, 50), (13, 9)])
@pytest.mark.parametrize("method", ["linear", "cubic"])
def test_resize_matches_pillow(rng, size, method):
  x = rng.random((40, 50)).astype(np.float32)
  pil = {"linear": Image.BILINEAR, "cubic": Image.BICUBIC}[method]
  want = np.asarray(Image.fromarray(x, mode="F").resize(size, pil))
  got = rs.resize(jnp.asarray(x)[..., None], size[::-1], method)[..., 0]
  np.testing.assert_allclose(np.asarray(got), want, atol=2e-6)


def test_shapes():
  assert rs.working_shape(375, 500, 250) == (188, 250)
  assert rs.working_shape(500, 375, 250) == (250, 188)
  assert rs.working_shape(36, 48, None) == (36, 48)
  assert rs.scaled_shape((36, 48), 0.3) == (11, 14)


@pytest.mark.parametrize("shape,density", [((23, 31), 0.02), ((40, 17), 0.2),
                                           ((9, 9), 1.0)])
def test_distance_transform_matches_scipy(rng, shape, density):
  mask = rng.random(shape) < density
  mask[rng.integers(shape[0]), rng.integers(shape[1])] = True
  want = ndimage.distance_transform_edt(~mask)
  np.testing.assert_allclose(np.asarray(distance_transform(mask)), want,
                             rtol=1e-6)


def test_distance_transform_without_features_is_inf():
  assert np.all(np.isinf(np.asarray(distance_transform(np.zeros((3, 4),
                                                                bool)))))


def brute_force_knn(q, qp, c, cp, k, damping):
  d = np.sqrt(((q[:, None].astype(np.float64) - c[None]) ** 2).sum(-1))
  d /= 1 + damping * np.sqrt(((qp[:, None] - cp[None]) ** 2).sum(-1))
  return np.sort(d, axis=1)[:, :k].mean(1)


@pytest.mark.parametrize("group_size", [None, 1, 3, 16])
def test_knn_matches_brute_force(rng, group_size):
  # Quantised values: many exact ties, and some candidates equal queries.
  q = (rng.integers(0, 4, (300, 12)) / 4).astype(np.float32)
  c = (rng.integers(0, 4, (700, 12)) / 4).astype(np.float32)
  c[:40] = q[:40]
  qp, cp = rng.random((300, 2)), rng.random((700, 2))
  got = knn.mean_knn_distance(q, qp, c, cp, k=20, c=3.0, block_size=128,
                              group_size=group_size)
  want = brute_force_knn(q, qp, c, cp, 20, 3.0)
  np.testing.assert_allclose(np.asarray(got), want, atol=2e-5)


@pytest.mark.parametrize("order", ["sorted", "reversed"])
def test_knn_candidates_in_distance_order(rng, order):
  # The nearest candidates side by side (few groups hold all k) or last: the
  # group selection and its top_k pre-filter must not depend on the order.
  q = rng.random((64, 10)).astype(np.float32)
  c = rng.random((900, 10)).astype(np.float32)
  c = c[np.argsort(((c - q.mean(0)) ** 2).sum(1))]
  if order == "reversed":
    c = c[::-1].copy()
  qp, cp = rng.random((64, 2)), rng.random((900, 2))
  got = knn.mean_knn_distance(q, qp, c, cp, k=48, c=3.0, group_size=8)
  want = brute_force_knn(q, qp, c, cp, 48, 3.0)
  np.testing.assert_allclose(np.asarray(got), want, atol=2e-5)


def test_knn_fewer_groups_than_k(rng):
  # 200 candidates in groups of 8 are 25 groups < k = 60: the kernel pads to
  # k groups, all-padding groups have +inf minima.
  q, c = rng.random((40, 6)).astype(np.float32), rng.random((200, 6))
  qp, cp = rng.random((40, 2)), rng.random((200, 2))
  got = knn.mean_knn_distance(q, qp, c.astype(np.float32), cp, k=60, c=3.0,
                              group_size=8)
  want = brute_force_knn(q, qp, c, cp, 60, 3.0)
  np.testing.assert_allclose(np.asarray(got), want, atol=2e-5)


def test_sum_smallest_handles_ties_zeros_and_inf(rng):
  x = rng.integers(0, 5, (128, 40)).astype(np.float32)
  x[:, :3] = [0.0, -0.0, np.inf]
  got = knn.sum_smallest(x, 7, jnp.sqrt)
  want = np.sqrt(np.sort(np.abs(x), axis=1)[:, :7]).sum(1)
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6)


def test_kth_smallest_errors():
  with pytest.raises(ValueError, match=r"`x` \(shape=\(5,\)\) must be 2-D"):
    knn.kth_smallest(np.zeros(5, np.float32), 1)
  with pytest.raises(ValueError, match=r"`k` \(=6\) must be between 1 and "
                     r"the row length \(=5\)"):
    knn.kth_smallest(np.zeros((2, 5), np.float32), 6)


def test_knn_k_larger_than_candidates():
  with pytest.raises(ValueError, match=r"`k` \(=9\) must be between 1 and "
                     r"the number of candidates \(=8\)"):
    knn.mean_knn_distance(np.zeros((4, 3)), np.zeros((4, 2)), np.zeros((8, 3)),
                          np.zeros((8, 2)), k=9, c=3.0)


# --- against the NumPy reference --------------------------------------------


@pytest.mark.parametrize("case", [
    dict(shape=(36, 48), channels=3, uint8=True, options=SMALL),
    dict(shape=(64, 64), channels=3, uint8=False, options=dict(max_side=64)),
    dict(shape=(60, 80), channels=3, uint8=True, options=dict(max_side=50)),
    dict(shape=(36, 48), channels=1, uint8=False,
         options=dict(max_side=48, border="edge")),
    dict(shape=(30, 40), channels=5, uint8=False,
         options=dict(max_side=36, output_size="working", k=32)),
    dict(shape=(36, 48), channels=3, uint8=True,
         options=dict(SMALL, candidate_steps=(2, 3, 2, 1),
                      reference_area=40.0, k=40)),
], ids=["rgb-36x48", "rgb-64x64", "rgb-resized", "gray-edge", "5planes",
        "steps-area"])
def test_matches_numpy_reference(rng, case):
  image = smooth_image(rng, *case["shape"], case["channels"],
                       uint8=case["uint8"])
  if case["channels"] == 1:
    image = image[..., 0]
  want = ref.context_aware(image, **case["options"])
  got = np.asarray(context_aware(image, **case["options"]))
  assert got.shape == want.shape and got.dtype == np.float32
  assert got.min() >= 0 and got.max() <= 1
  assert want.max() > 0.5  # a non-trivial map
  np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


# --- float64 (jax_enable_x64) ----------------------------------------------
# float64 input runs every stage in float64 and gives a float64 map; uint8
# input stays on the float32 path (see "Precision" in the kernel's module
# docstring).


def test_float64_input_gives_a_float64_map_and_uint8_stays_float32(x64, rng):
  image = smooth_image(rng, 36, 48, 3)
  assert context_aware(image, **SMALL).dtype == jnp.float64
  assert context_aware(image.astype(np.float32), **SMALL).dtype == jnp.float32
  as_uint8 = (image * 255).round().astype(np.uint8)
  assert context_aware(as_uint8, **SMALL).dtype == jnp.float32
  images = np.stack([image, smooth_image(rng, 36, 48, 3)])
  batch = context_aware_batch(images, **SMALL)
  assert batch.dtype == jnp.float64
  singles = np.stack([np.asarray(context_aware(im, **SMALL)) for im in images])
  # Split by image (batch) or by query patch (singles): other block shapes
  # round |q|^2 + |c|^2 - 2 q.c differently, and near d = 0 (a query's own
  # grid patch) the square root turns an eps-sized error into ~sqrt(eps)
  # (measured: 1.4e-10; the float32 analogue above is 3.5e-6).
  np.testing.assert_allclose(np.asarray(batch), singles, atol=1e-9, rtol=0)


@pytest.mark.parametrize("case", [
    dict(shape=(60, 80), channels=3, options=dict(max_side=50)),
    dict(shape=(36, 48), channels=1, options=dict(max_side=48, border="edge")),
], ids=["rgb-resized", "plane-edge"])
def test_float64_map_is_closer_to_the_numpy_reference(x64, rng, case):
  image = smooth_image(rng, *case["shape"], case["channels"])
  if case["channels"] == 1:
    image = image[..., 0]  # one float64 plane, as a relevance image
  want = ref.context_aware(image, **case["options"])
  got64 = np.asarray(context_aware(image, **case["options"]))
  got32 = np.asarray(context_aware(image.astype(np.float32),
                                   **case["options"]))
  assert got64.dtype == np.float64 and got32.dtype == np.float32
  err64, err32 = np.abs(got64 - want).max(), np.abs(got32 - want).max()
  # float32 agrees with float64 to float32 precision (measured: r = 1 -
  # 1e-12, max difference 2.4e-6; the float32 tests above allow 2e-5).
  assert np.corrcoef(got64.ravel(), got32.ravel())[0, 1] >= 0.999
  np.testing.assert_allclose(got32, got64, atol=2e-5, rtol=0)
  # float64 is far closer to the float64 reference (measured: 1.3e-10 and
  # 2.2e-10 against float32's 2.4e-6; what is left is ~sqrt(eps) at d = 0,
  # see the batch test above).
  assert err64 <= 1e-8 and err64 * 1000 <= err32, (err64, err32)


def test_kth_smallest_float64_equals_np_partition(x64, rng):
  # Magnitudes over the whole float64 range (subnormals to 1e300, beyond
  # float32), neighbours one ulp apart, ties, zeros of both signs and inf;
  # 130 rows go through the row chunks, 64 rows are one chunk.
  for rows in (130, 64):
    x = rng.random((rows, 77)) * 10.0 ** rng.integers(-320, 300, (rows, 77))
    x[:, :4] = [0.0, -0.0, np.inf, 5e-324]
    x[:, 4] = np.nextafter(x[:, 5], np.inf)
    x[:, 6] = x[:, 7]
    for k in (1, 2, 6, 40, 77):
      got = knn.kth_smallest(x, k)
      assert got.dtype == jnp.float64
      want = np.partition(np.abs(x), k - 1, axis=1)[:, k - 1]
      np.testing.assert_array_equal(np.asarray(got), want)


def test_sum_smallest_float64_is_exact(x64, rng):
  # Integers up to 2^40 (not representable in float32) with many ties: every
  # partial sum is an exact float64 integer, whatever the order.
  x = rng.integers(0, 2 ** 40, (128, 60)).astype(np.float64)
  x[:, 10:20] = x[:, :10]
  for k in (1, 7, 33, 60):
    got = knn.sum_smallest(x, k)
    assert got.dtype == jnp.float64
    np.testing.assert_array_equal(np.asarray(got),
                                  np.sort(x, axis=1)[:, :k].sum(1))
  got = knn.sum_smallest(x, 7, jnp.sqrt)
  want = np.sqrt(np.sort(x, axis=1)[:, :7]).sum(1)
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-15)


@pytest.mark.parametrize("group_size", [None, 1])
def test_knn_float64_matches_brute_force(x64, rng, group_size):
  # Near-ties 1e-9 apart, which float32 cannot tell apart.
  q = (rng.integers(0, 4, (300, 12)) / 4) + rng.random((300, 12)) * 1e-9
  c = (rng.integers(0, 4, (700, 12)) / 4) + rng.random((700, 12)) * 1e-9
  c[:40] = q[:40]
  qp, cp = rng.random((300, 2)), rng.random((700, 2))
  got = knn.mean_knn_distance(q, qp, c, cp, k=20, c=3.0, block_size=128,
                              group_size=group_size)
  assert got.dtype == jnp.float64
  want = brute_force_knn(q, qp, c, cp, 20, 3.0)
  got = np.asarray(got)
  # Rows 40 and up: every distance well away from 0, near-ties resolved
  # (measured: 2.8e-16).
  np.testing.assert_allclose(got[40:], want[40:], atol=1e-14, rtol=0)
  # Rows 0-39 hold an exact duplicate, d = 0, where the kernel's
  # |q|^2 + |c|^2 - 2 q.c leaves a rounding residue r and returns sqrt(r).
  # Higham's bound for the D + 2 products and sums, |r| <= gamma_{D+2}
  # (|q|^2 + |c|^2 + 2 |q||c|) = 4 gamma_{D+2} |q|^2, over k for the mean;
  # the other 19 distances of each row are as exact as above. (Whether r is
  # 0 or 1 ulp depends on the dot's summation order: Eigen's and YNNPACK's
  # differ.)
  u = np.finfo(np.float64).eps / 2
  gamma = (12 + 2) * u / (1 - (12 + 2) * u)
  bound = np.sqrt(4 * gamma * (q[:40] ** 2).sum(1)) / 20 + 1e-14
  assert np.all(np.abs(got[:40] - want[:40]) <= bound), (
      np.abs(got[:40] - want[:40]).max(), bound.min())


def test_float64_building_blocks_match_their_references(x64, rng):
  mask = rng.random((23, 31)) < 0.05
  got = distance_transform(mask, dtype=np.float64)
  assert got.dtype == jnp.float64
  # Exact integer squared distances, one correctly rounded square root.
  np.testing.assert_array_equal(np.asarray(got),
                                ndimage.distance_transform_edt(~mask))
  for n_in, n_out in ((36, 29), (29, 36), (48, 11)):
    for method in ("linear", "cubic"):
      weights = rs.resize_weights(n_in, n_out, method, np.float64)
      assert weights.dtype == np.float64
      # The same formula, rounded in another order (measured: 2.5e-15).
      np.testing.assert_allclose(weights, ref.resize_matrix(n_in, n_out,
                                                            method),
                                 atol=1e-14, rtol=0)
  x = jnp.asarray(rng.random((36, 48, 2)))
  assert rs.resize(x, (29, 11), "cubic").dtype == jnp.float64


# --- properties -------------------------------------------------------------


def test_constant_image_gives_zeros():
  got = np.asarray(context_aware(np.full((36, 48, 3), 77, np.uint8), **SMALL))
  assert not np.isnan(got).any()
  np.testing.assert_array_equal(got, 0.0)


def blob_image(top, left):
  image = np.full((36, 48, 3), 128, np.uint8)
  image[top:top + 6, left:left + 6] = [220, 30, 30]
  return image


def test_single_blob_holds_the_maximum_and_moves_with_it():
  peaks = []
  for top, left in [(6, 8), (22, 34)]:
    sal = np.asarray(context_aware(blob_image(top, left), **SMALL))
    y, x = np.unravel_index(np.argmax(sal), sal.shape)
    assert top - 1 <= y <= top + 6 and left - 1 <= x <= left + 6, (y, x)
    far = sal.copy()
    far[max(top - 8, 0):top + 14, max(left - 8, 0):left + 14] = 0
    assert far.max() < 0.5 * sal.max()
    peaks.append((y, x))
  assert peaks[0] != peaks[1]


def test_batch_equals_single_images_and_no_recompile(rng):
  images = np.stack([smooth_image(rng, 36, 48, 3, uint8=True)
                     for _ in range(3)])
  singles = [np.asarray(context_aware(im, **SMALL)) for im in images]
  compiled = _module._single._cache_size()
  again = np.asarray(context_aware(images[0], **SMALL))
  assert _module._single._cache_size() == compiled  # no recompilation
  np.testing.assert_array_equal(again, singles[0])
  batch = np.asarray(context_aware_batch(images, **SMALL))
  assert batch.shape == (3, 36, 48)
  # The same per-image program (lax.map, not vmap): equal up to rounding.
  np.testing.assert_allclose(batch, np.stack(singles), atol=1e-6, rtol=0)


@pytest.mark.skipif(len(jax.devices()) < 2, reason="needs 2 devices")
def test_split_over_devices_does_not_change_the_map(rng):
  images = np.stack([smooth_image(rng, 36, 48, 3, uint8=True)
                     for _ in range(3)])
  one = [np.asarray(context_aware(im, **SMALL, num_devices=1))
         for im in images]
  two = [np.asarray(context_aware(im, **SMALL, num_devices=2))
         for im in images]
  # Other block shapes round |q|^2 + |c|^2 - 2 q.c differently in float32
  # (measured: up to 3.5e-6); the kernel's own error against the float64
  # reference is up to ~7e-6, so 2e-5 still catches a wrong split.
  np.testing.assert_allclose(np.stack(two), np.stack(one), atol=2e-5, rtol=0)
  # 2 images on 2 devices: split by image (each image's program is the
  # one-device program: equal up to 1e-6); 3 images: split by query patch.
  for n, atol in ((2, 1e-6), (3, 2e-5)):
    got = np.asarray(context_aware_batch(images[:n], **SMALL, num_devices=2))
    np.testing.assert_allclose(got, np.stack(one[:n]), atol=atol, rtol=0)
  assert context_aware(images[0], **SMALL).devices() == {jax.devices()[0]}


def _intermediate_shapes(jaxpr) -> list[tuple[int, ...]]:
  """Shapes of every array the equations of `jaxpr` produce, loop and
  shard_map bodies included (with their per-iteration shapes)."""
  def subjaxprs(value):
    if hasattr(value, "eqns"):
      yield value
    elif hasattr(getattr(value, "jaxpr", None), "eqns"):
      yield value.jaxpr
    elif isinstance(value, (tuple, list)):
      for v in value:
        yield from subjaxprs(v)

  shapes = []
  for eqn in jaxpr.eqns:
    shapes += [tuple(getattr(out.aval, "shape", ())) for out in eqn.outvars]
    for value in eqn.params.values():
      for sub in subjaxprs(value):
        shapes += _intermediate_shapes(sub)
  return shapes


@pytest.mark.parametrize("block_size", [64, 512])
def test_no_queries_by_candidates_array_is_built(block_size):
  # Memory is bounded by the query blocks: no intermediate anywhere in the
  # traced kernel holds one value per (query, candidate) pair. At 120x160
  # that would be ~1e8 values; the largest legitimate ones are a block's
  # distances (block x candidates) and the distance transform's H x W x W.
  shape = (120, 160, 3)
  plan = make_plan(shape[:2], Options.create(max_side=None))
  n_q = max((s.shape[0] - 2 * s.half_size) * (s.shape[1] - 2 * s.half_size)
            for s in plan.scales)
  n_c = max(s.n_candidates for s in plan.scales)
  closed = jax.make_jaxpr(lambda x: context_aware(
      x, max_side=None, block_size=block_size, num_devices=1))(
          jnp.zeros(shape, jnp.float32))
  shapes = _intermediate_shapes(closed.jaxpr)
  # The walk reaches the block loop: a block's distances to all candidates.
  assert any(s[:1] == (block_size,) and math.prod(s) >= block_size * n_c
             for s in shapes)
  largest = max(math.prod(s) for s in shapes)
  assert largest < n_q * n_c // 16, (largest, n_q * n_c)


def test_num_devices_beyond_what_jax_sees():
  with pytest.raises(ValueError, match=r"`num_devices` \(=99\) must be <= "
                     r"the number of devices JAX sees \(\d+, cpu\)"):
    context_aware(np.zeros((36, 48), np.float32), **SMALL, num_devices=99)


def test_works_inside_a_callers_jit(x64, rng):
  """The same computation inside a caller's jit: in float64 the two maps
  agree to rounding, which the square root of a near-zero patch distance
  can amplify to sqrt(eps) = 1.5e-8 (measured 2.2e-16 with single YNNPACK
  dots, 3.6e-11 without YNNPACK). In float32 the two compilations round
  the distance products differently, so the same check would only show
  float32 rounding (1.1e-6 on the [0, 1] map with YNNPACK dots)."""
  image = smooth_image(rng, 36, 48, 3)
  inside = jax.jit(lambda x: context_aware(x, **SMALL))(image)
  assert inside.dtype == jnp.float64
  np.testing.assert_allclose(np.asarray(inside),
                             np.asarray(context_aware(image, **SMALL)),
                             atol=np.sqrt(np.finfo(np.float64).eps), rtol=0)


# --- errors -----------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input(bad):
  image = np.zeros((36, 48), np.float32)
  image[3, 4] = bad
  with pytest.raises(ValueError, match=r"`image` contains 1 non-finite "
                     r"value\(s\) \(first: (nan|inf|-inf)\)"):
    context_aware(image)


@pytest.mark.parametrize("shape", [(48,), (2, 36, 48, 3), (0, 48)])
def test_wrong_number_of_dimensions(shape):
  with pytest.raises(ValueError, match=r"`image` \(shape=.*\) must be a "
                     r"non-empty HxW or HxWxC array"):
    context_aware(np.zeros(shape, np.float32))


@pytest.mark.parametrize("shape", [(36, 48), (1, 2, 36, 48, 3), (0, 36, 48)])
def test_wrong_number_of_dimensions_in_batch(shape):
  with pytest.raises(ValueError, match=r"`images` \(shape=.*\) must be a "
                     r"non-empty NxHxW or NxHxWxC array"):
    context_aware_batch(np.zeros(shape, np.float32))


@pytest.mark.parametrize("image", [np.zeros((36, 48), bool),
                                   np.zeros((36, 48), np.int32),
                                   np.full((36, 48), "a"),
                                   np.zeros((36, 48), complex)])
def test_non_numeric_dtype(image):
  with pytest.raises(TypeError, match=r"`image` \(dtype=\S+\) must be uint8 "
                     r"or floating point"):
    context_aware(image)


def test_image_smaller_than_patch_after_resizing():
  with pytest.raises(ValueError, match=r"The image \(1000x20, 250x5 after "
                     r"resizing to `max_side`=250\) is 250x5 at scale 1.0, "
                     r"smaller than its 7x7 patch"):
    context_aware(np.zeros((1000, 20), np.uint8))
  with pytest.raises(ValueError, match=r"smaller than its 7x7 patch"):
    context_aware(np.zeros((6, 6), np.uint8), max_side=None)


def test_k_larger_than_candidates_is_a_clear_error():
  # 36x48 at scale 0.3 is 11x14: 9 * 12 = 108 candidate 3x3 patches (the
  # pyramid levels below it are under `min_pyramid_scale`); the larger
  # scales have more than 120.
  with pytest.raises(ValueError, match=r"`k` \(=120\) must be <= the number "
                     r"of candidates \(=108\) at scale 0.3"):
    context_aware(np.zeros((36, 48), np.uint8), k=120, **SMALL)


@pytest.mark.parametrize("options,message", [
    (dict(border="wrap"), r"`border` \(='wrap'\) must be one of"),
    (dict(output_size=3), r"`output_size` \(=3\) must be one of"),
    (dict(half_sizes=(3, 2)), r"`half_sizes` \(=\(3, 2\)\) must hold one int"),
    (dict(k=0), r"`k` \(=0\) must be an int >= 1"),
    (dict(block_size=0), r"`block_size` \(=0\) must be an int >= 1"),
    (dict(num_devices=0), r"`num_devices` \(=0\) must be None or an int"),
    (dict(candidate_steps=(3, 2)), r"`candidate_steps` \(=\(3, 2\)\) must be "
     r"None \(the half-sizes\) or hold one int >= 1 per scale \(4\)"),
    (dict(candidate_steps=(3, 2, 0, 1)), r"`candidate_steps` \(=\(3, 2, 0, "
     r"1\)\) must be None"),
    (dict(reference_area=0), r"`reference_area` \(=0.0\) must be > 0"),
    (dict(max_side=0), r"`max_side` \(=0\) must be an int >= 1 or None"),
    (dict(pyramid=(1.0, 2.0)), r"`pyramid` \(=\(1.0, 2.0\)\) must be"),
    (dict(focus_threshold=1.5), r"`focus_threshold` \(=1.5\) must be in"),
    (dict(c="3"), r"`c` \(='3'\) must be a number"),
])
def test_invalid_options(options, message):
  with pytest.raises(ValueError, match=message):
    context_aware(np.zeros((36, 48), np.uint8), **options)


def test_unknown_option():
  with pytest.raises(TypeError, match=r"Unknown option\(s\) \['kk'\]"):
    context_aware(np.zeros((36, 48), np.uint8), kk=3)
