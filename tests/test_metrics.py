"""Tests for sr_jax.metrics on hand-made maps and masks with known answers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from skimage.metrics import structural_similarity

from sr_jax import maps, metrics


def _minmax(x):
  x = np.asarray(x, np.float64)
  return (x - x.min()) / (x.max() - x.min())


# --- pointing game ---------------------------------------------------------


def test_pointing_game_hit_and_miss():
  m = np.zeros((4, 5))
  m[1, 2] = 3.0
  mask = np.zeros((4, 5), bool)
  mask[1, 2] = True
  assert metrics.pointing_game(m, mask) == 1.0
  mask2 = np.zeros((4, 5), bool)
  mask2[3, 4] = True
  assert metrics.pointing_game(m, mask2) == 0.0


def test_pointing_game_ties_score_their_hit_share():
  m = np.zeros((3, 3))
  m[0, 0] = m[2, 2] = 1.0  # two tied maxima, one inside the mask
  mask = np.zeros((3, 3), bool)
  mask[0, :] = True
  assert metrics.pointing_game(m, mask) == 0.5
  # A constant map is all ties: chance level, 3 of 9 pixels.
  assert metrics.pointing_game(np.ones((3, 3)), mask) == pytest.approx(1 / 3)


def test_pointing_game_tolerance_is_euclidean():
  m = np.zeros((8, 8))
  m[0, 0] = 1.0
  mask = np.zeros((8, 8), bool)
  mask[3, 4] = True  # distance 5 from the maximum
  assert metrics.pointing_game(m, mask, tolerance=4.9) == 0.0
  assert metrics.pointing_game(m, mask, tolerance=5) == 1.0
  with pytest.raises(ValueError, match=r"`tolerance` \(=-1\) must be"):
    metrics.pointing_game(m, mask, tolerance=-1)


def test_pointing_game_batch_and_jax_input():
  maps = np.zeros((2, 3, 3))
  maps[0, 0, 0] = 1.0
  maps[1, 2, 2] = 1.0
  mask = np.zeros((2, 3, 3), bool)
  mask[:, 0, 0] = True
  out = metrics.pointing_game(jnp.asarray(maps, jnp.float32), jnp.asarray(mask))
  np.testing.assert_array_equal(out, [1.0, 0.0])
  tol = metrics.pointing_game(maps, mask, tolerance=3)
  np.testing.assert_array_equal(tol, [1.0, 1.0])


@pytest.mark.parametrize("fn", [metrics.pointing_game,
                                metrics.relevance_mass_accuracy,
                                metrics.rank_accuracy])
def test_map_mask_errors(fn):
  mask = np.ones((3, 3), bool)
  with pytest.raises(ValueError, match=r"`mask` \(shape=\(3, 3\)\) must have "
                     r"the shape of `map` \(=\(3, 3, 3\)\)"):
    fn(np.ones((3, 3, 3)), mask)
  bad = np.ones((3, 3))
  bad[1, 1] = np.nan
  with pytest.raises(ValueError, match=r"`map` contains 1 NaN or inf"):
    fn(bad, mask)
  with pytest.raises(ValueError, match="`mask` is empty"):
    fn(np.ones((3, 3)), np.zeros((3, 3), bool))
  with pytest.raises(ValueError, match="must be boolean or hold only 0 and 1"):
    fn(np.ones((3, 3)), np.full((3, 3), 2))
  with pytest.raises(ValueError, match=r"must be HxW or a batch NxHxW"):
    fn(np.ones(3), np.ones(3, bool))


# --- relevance mass accuracy -----------------------------------------------


def test_relevance_mass_accuracy_by_hand():
  m = np.array([[3.0, -2.0], [1.0, 0.0]])
  mask = np.array([[1, 0], [0, 1]])  # 0/1 ints are accepted
  # Positive mass 3 + 1 = 4, of which 3 is inside.
  assert metrics.relevance_mass_accuracy(m, mask) == pytest.approx(0.75)
  assert metrics.relevance_mass_accuracy(-np.abs(m), mask) == 0.0
  assert metrics.relevance_mass_accuracy(np.zeros((2, 2)), mask) == 0.0
  batch = metrics.relevance_mass_accuracy(np.stack([m, m[::-1]]),
                                          np.stack([mask, mask]))
  # Flipped rows: positives 1 (inside at [0,0]) and 3 (outside at [1,0]).
  np.testing.assert_allclose(batch, [0.75, 0.25])


# --- rank accuracy ---------------------------------------------------------


def test_rank_accuracy_by_hand():
  m = np.arange(9.0).reshape(3, 3)  # top 3 are 8, 7, 6: the last row
  mask = np.zeros((3, 3), bool)
  mask[2, 1:] = True  # 7 and 8
  mask[0, 0] = True  # 0
  assert metrics.rank_accuracy(m, mask) == pytest.approx(2 / 3)
  # Signed values rank as they are: negatives come last.
  assert metrics.rank_accuracy(-m, mask) == pytest.approx(1 / 3)


def test_rank_accuracy_ties_at_the_threshold():
  m = np.array([[5.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
  mask = np.zeros((2, 3), bool)
  mask[0, :2] = True  # K = 2: the 5 (inside) and one of the three tied 1s
  # One of three tied pixels is inside: (1 + 1 * 1/3) / 2.
  assert metrics.rank_accuracy(m, mask) == pytest.approx(2 / 3)
  assert metrics.rank_accuracy(np.ones((2, 3)), mask) == pytest.approx(2 / 6)


# --- SSIM ratio ------------------------------------------------------------


def test_ssim_ratio_matches_skimage(rng):
  relevance = rng.normal(size=(24, 20, 3))
  sr = rng.random((24, 20))
  saliency = rng.random((24, 20)) ** 2
  out = metrics.ssim_ratio(relevance, sr, saliency)
  lrp = _minmax(np.abs(relevance).sum(-1))
  want_lrp = structural_similarity(lrp, _minmax(saliency), data_range=1.0)
  want_sr = structural_similarity(_minmax(sr), _minmax(saliency),
                                  data_range=1.0)
  assert out.ssim_lrp == pytest.approx(want_lrp, abs=1e-12)
  assert out.ssim_sr == pytest.approx(want_sr, abs=1e-12)
  assert out.ratio == pytest.approx(want_sr / want_lrp, rel=1e-12)


def test_ssim_ratio_identical_maps_give_one(rng):
  saliency = rng.random((16, 16))
  # An affine copy of the saliency map has SSIM 1 after min-max scaling.
  relevance = np.zeros((16, 16, 3))
  relevance[..., 1] = -(2.0 * saliency + 1.0)
  out = metrics.ssim_ratio(relevance, saliency, saliency)
  assert out.ssim_lrp == pytest.approx(1.0, abs=1e-12)
  assert out.ssim_sr == pytest.approx(1.0, abs=1e-12)
  assert out.ratio == pytest.approx(1.0, abs=1e-12)


def test_ssim_ratio_constant_maps_are_finite(rng):
  # Constant maps normalize to zeros; SSIM(zeros, zeros) is exactly 1.
  out = metrics.ssim_ratio(np.zeros((9, 9, 3)), np.full((9, 9), 0.3),
                           np.full((9, 9), 0.7))
  assert out == (pytest.approx(1.0), pytest.approx(1.0), pytest.approx(1.0))
  saliency = rng.random((9, 9))
  out = metrics.ssim_ratio(np.zeros((9, 9, 3)), np.zeros((9, 9)), saliency)
  want = structural_similarity(np.zeros((9, 9)), _minmax(saliency),
                               data_range=1.0)
  assert np.isfinite(out).all()
  assert out.ssim_lrp == pytest.approx(want, abs=1e-12)


def test_ssim_ratio_batch_equals_single(rng):
  relevance = rng.normal(size=(3, 12, 12, 3))
  sr = rng.random((3, 12, 12))
  saliency = rng.random((3, 12, 12))
  out = metrics.ssim_ratio(jnp.asarray(relevance, jnp.float32), sr, saliency)
  assert out.ratio.shape == (3,)
  for i in range(3):
    one = metrics.ssim_ratio(np.float32(relevance[i]), sr[i], saliency[i])
    np.testing.assert_allclose([out.ssim_lrp[i], out.ssim_sr[i], out.ratio[i]],
                               list(one), rtol=1e-12)
  # An HxW relevance plane per image is taken as it is.
  planes = metrics.ssim_ratio(saliency, sr, saliency)
  np.testing.assert_allclose(planes.ssim_lrp, 1.0, atol=1e-12)


def test_ssim_ratio_errors():
  with pytest.raises(ValueError, match=r"`image_saliency` \(shape=\(8, 9\)\) "
                     r"must have the shape of `sr_map` \(=\(8, 8\)\)"):
    metrics.ssim_ratio(np.ones((8, 8, 3)), np.ones((8, 8)), np.ones((8, 9)))
  with pytest.raises(ValueError, match=r"`relevance_map` \(shape=\(8, 9, 3\)\)"):
    metrics.ssim_ratio(np.ones((8, 9, 3)), np.ones((8, 8)), np.ones((8, 8)))
  with pytest.raises(ValueError, match="too small for SSIM"):
    metrics.ssim_ratio(np.ones((5, 5, 3)), np.ones((5, 5)), np.ones((5, 5)))
  sr = np.ones((8, 8))
  sr[3, 4] = np.nan
  with pytest.raises(ValueError, match="`sr_map` contains 1 NaN or inf"):
    metrics.ssim_ratio(np.ones((8, 8, 3)), sr, np.ones((8, 8)))


def test_lrp_map_by_hand():
  r = np.zeros((2, 2, 3))
  r[0, 0, 0], r[0, 1, 2], r[1, 1, 0], r[1, 1, 1] = 1.0, -1.0, -1.0, 1.0
  # Channel-summed |R| = [[1, 1], [0, 2]], scaled by 1/2.
  np.testing.assert_allclose(metrics.lrp_map(r), [[0.5, 0.5], [0.0, 1.0]])
  np.testing.assert_array_equal(metrics.lrp_map(np.full((2, 2, 3), 4.0)), 0.0)


# --- pixel flipping --------------------------------------------------------


def test_pixel_flipping_on_a_linear_model():
  w = np.array([[4.0, 3.0], [2.0, 1.0]])
  calls = []

  def predict(batch):
    calls.append(batch.shape[0])
    return (batch[..., 0] * w).sum(axis=(1, 2))

  out = metrics.pixel_flipping(predict, np.ones((2, 2, 1)), w, steps=4,
                               baseline=0.0)
  # Removing the largest weight first: 10, 10-4, 10-4-3, 1, 0.
  np.testing.assert_allclose(out.curve, [10, 6, 3, 1, 0])
  np.testing.assert_allclose(out.fractions, [0, 0.25, 0.5, 0.75, 1])
  assert out.aopc == pytest.approx((0 + 4 + 7 + 9 + 10) / 5)
  assert calls == [5]
  # The reversed map flips the least relevant first: a smaller AOPC.
  worse = metrics.pixel_flipping(predict, np.ones((2, 2, 1)), -w, steps=4,
                                 batch_size=2)
  np.testing.assert_allclose(worse.curve, [10, 9, 7, 4, 0])
  assert calls[1:] == [2, 2, 1]
  assert worse.aopc < out.aopc


def test_pixel_flipping_baseline_image_and_channel_map():
  image = np.full((2, 2, 3), 5.0)
  baseline = np.zeros((2, 2, 3))
  relevance = np.zeros((2, 2, 3))
  relevance[1, 0] = 1.0  # flipped first

  seen = []

  def predict(batch):
    seen.append(batch.copy())
    return batch.sum(axis=(1, 2, 3))

  out = metrics.pixel_flipping(predict, image, relevance, steps=2,
                               baseline=baseline)
  np.testing.assert_allclose(out.curve, [60, 30, 0])
  step1 = seen[0][1]
  assert (step1[1, 0] == 0).all() and step1.sum() == 30


def test_pixel_flipping_errors():
  image = np.ones((2, 2, 1))
  w = np.ones((2, 2))
  with pytest.raises(ValueError, match=r"`steps` \(=5\) must be an integer in"):
    metrics.pixel_flipping(lambda b: b.sum((1, 2, 3)), image, w, steps=5)
  with pytest.raises(ValueError, match="returned 1 scores for 3 images"):
    metrics.pixel_flipping(lambda b: np.zeros(1), image, w, steps=2)
  with pytest.raises(ValueError, match=r"`relevance_map` \(shape=\(3, 3\)\)"):
    metrics.pixel_flipping(lambda b: b.sum((1, 2, 3)), image, np.ones((3, 3)),
                           steps=2)


# --- randomisation similarity ----------------------------------------------


def test_randomization_similarity_known_cases(rng):
  a = rng.normal(size=(10, 10))
  same = metrics.randomization_similarity(a, a)
  assert same.spearman == pytest.approx(1.0)
  assert same.ssim == pytest.approx(1.0)
  # Ranks ignore monotone transforms; a sign flip reverses them.
  assert metrics.randomization_similarity(a, np.exp(a)).spearman == (
      pytest.approx(1.0))
  assert metrics.randomization_similarity(a, -a).spearman == pytest.approx(-1)
  assert metrics.randomization_similarity(a, -a, absolute=True).spearman == (
      pytest.approx(1.0))
  assert metrics.randomization_similarity(a, np.ones((10, 10))).spearman == 0.0


def test_randomization_similarity_matches_scipy_with_ties(rng):
  a = np.round(rng.normal(size=(2, 9, 9)), 1)
  b = np.round(a + rng.normal(size=(2, 9, 9)), 1)
  out = metrics.randomization_similarity(a, b)
  for i in range(2):
    want = stats.spearmanr(a[i].ravel(), b[i].ravel()).statistic
    assert out.spearman[i] == pytest.approx(want, abs=1e-12)
    want_ssim = structural_similarity(_minmax(a[i]), _minmax(b[i]),
                                      data_range=1.0)
    assert out.ssim[i] == pytest.approx(want_ssim, abs=1e-12)
  with pytest.raises(ValueError, match=r"`map_b` \(shape=\(9, 9\)\) must have"):
    metrics.randomization_similarity(a, b[0])


# --- package layout ----------------------------------------------------------


def test_every_name_of_the_flat_module_is_still_exported():
  old = ["SSIMRatio", "PixelFlipping", "RandomizationSimilarity", "Score",
         "as_map", "normalize", "lrp_map", "ssim_ratio", "pointing_game",
         "relevance_mass_accuracy", "rank_accuracy", "pixel_flipping",
         "randomization_similarity"]
  for name in old:
    assert hasattr(metrics, name), name
  assert set(metrics.__all__) >= set(old) - {"Score"}
  # Min-max scaling has one home, sr_jax.maps.
  assert metrics.normalize is maps.normalize
  assert metrics.lrp_map is maps.lrp_map


# --- pointing game: the protocol ---------------------------------------------


def test_pointing_tolerance_scales_15_px_at_224():
  assert metrics.pointing_tolerance((224, 224)) == 15.0
  assert metrics.pointing_tolerance((64, 64)) == pytest.approx(15 * 64 / 224)
  assert metrics.pointing_tolerance((3, 100, 448)) == pytest.approx(
      15 * 100 / 224)  # the shorter side of the last two axes
  assert metrics.pointing_tolerance((64, 64), pixels=7,
                                    reference_size=64) == 7.0
  with pytest.raises(ValueError, match=r"`shape` \(=\(5,\)\) must end"):
    metrics.pointing_tolerance((5,))


def test_pointing_game_delta_in_mask_hits_and_empty_mask_never_does():
  m = np.zeros((9, 9))
  m[4, 4] = 1.0  # a delta inside the mask
  mask = np.zeros((9, 9), bool)
  mask[3:6, 3:6] = True
  assert metrics.pointing_game(m, mask) == 1.0
  empty = np.zeros((9, 9), bool)
  with pytest.raises(ValueError, match="`mask` is empty"):
    metrics.pointing_game(m, empty)
  assert metrics.pointing_game(m, empty, allow_empty=True) == 0.0
  assert metrics.pointing_game(np.ones((9, 9)), empty, tolerance=20,
                               allow_empty=True) == 0.0


def test_pointing_game_accuracy_is_the_mean_over_classes():
  h = w = 64
  tol = 15 * 64 / 224  # 4.29 px
  maps, masks, labels = [], [], []

  def add(point, mask_pixel, label):
    m = np.zeros((h, w))
    m[point] = 1.0
    k = np.zeros((h, w), bool)
    if mask_pixel is not None:
      k[mask_pixel] = True
    maps.append(m)
    masks.append(k)
    labels.append(label)

  add((10, 10), (10, 14), 0)  # 4 px away: within 4.29, a hit
  add((10, 10), (10, 15), 0)  # 5 px away: a miss
  add((30, 30), (33, 33), 1)  # 4.24 px away: a hit
  add((30, 30), None, 2)  # empty mask: a miss
  out = metrics.pointing_game_accuracy(np.stack(maps), np.stack(masks),
                                       np.array(labels))
  assert out.tolerance == pytest.approx(tol)
  np.testing.assert_array_equal(out.hits, [1, 0, 1, 0])
  np.testing.assert_array_equal(out.classes, [0, 1, 2])
  np.testing.assert_allclose(out.class_accuracy, [0.5, 1.0, 0.0])
  assert out.accuracy == pytest.approx(0.5)
  # A third image of class 0, a miss: the mean over classes is
  # (1/3 + 1 + 0) / 3, not the 2 / 5 of all images.
  add((50, 50), (0, 0), 0)
  out = metrics.pointing_game_accuracy(np.stack(maps), np.stack(masks),
                                       np.array(labels))
  assert out.accuracy == pytest.approx((1 / 3 + 1 + 0) / 3)
  # Without tolerance every point misses by at least 4 px.
  out = metrics.pointing_game_accuracy(np.stack(maps), np.stack(masks),
                                       np.array(labels), tolerance=0)
  assert out.tolerance == 0.0 and out.accuracy == 0.0


def test_pointing_game_accuracy_errors():
  maps = np.zeros((2, 8, 8))
  masks = np.ones((2, 8, 8), bool)
  with pytest.raises(ValueError, match=r"`labels` \(shape=\(3,\), "
                     r"dtype=int64\) must hold one integer per map \(2\)"):
    metrics.pointing_game_accuracy(maps, masks, np.array([0, 1, 2]))
  with pytest.raises(ValueError, match=r"`labels` .*dtype=float64"):
    metrics.pointing_game_accuracy(maps, masks, np.array([0.0, 1.0]))
  with pytest.raises(ValueError, match=r"`maps` \(shape=\(8, 8\)\) must be a "
                     "batch"):
    metrics.pointing_game_accuracy(maps[0], masks[0], np.array([0]))


def test_random_maps_point_at_chance(rng):
  n = 400
  mask = np.zeros((16, 16), bool)
  mask[:8, :8] = True  # a quarter of the pixels
  maps = rng.random((n, 16, 16))
  out = metrics.pointing_game_accuracy(
      maps, np.broadcast_to(mask, maps.shape), np.zeros(n, int), tolerance=0)
  se = np.sqrt(0.25 * 0.75 / n)
  assert abs(out.accuracy - 0.25) < 3 * se


# --- IoU curves (An8Flower) --------------------------------------------------


def _iou_case():
  m = np.zeros((4, 4))
  m[0, 0], m[0, 1], m[1, 0] = 4.0, 2.0, 1.0  # inside the mask; m[1, 1] = 0
  m[3, 3] = 1.0  # outside, tied with m[1, 0]
  m[3, 0] = -5.0  # negative: no mass
  mask = np.zeros((4, 4), bool)
  mask[:2, :2] = True
  return m, mask


def test_iou_curve_by_mass_by_hand():
  m, mask = _iou_case()
  # Sorted mass 4, 2, 1, 1 (sum 8): 50% -> {4}, 75% -> {4, 2}, 87.5% and
  # 100% -> {4, 2, 1, 1}: both tied 1s, one outside the mask.
  out = metrics.iou_curve(m, mask, levels=(0.5, 0.75, 0.875, 1.0))
  np.testing.assert_allclose(out.iou, [1 / 4, 2 / 4, 3 / 5, 3 / 5])
  np.testing.assert_array_equal(out.levels, [0.5, 0.75, 0.875, 1.0])
  trapezoids = ((0.25 + 0.5) / 2 * 0.25 + (0.5 + 0.6) / 2 * 0.125
                + 0.6 * 0.125)
  assert out.auc == pytest.approx(trapezoids / 0.5)
  assert metrics.iou_curve(m, mask, levels=(0.75,)).auc == pytest.approx(0.5)


def test_iou_curve_by_area_and_default_levels():
  m, mask = _iou_case()
  # Top 2 of 16 pixels: {4, 2}; top 4: {4, 2} and the two tied 1s.
  out = metrics.iou_curve(m, mask, levels=(0.125, 0.25), by="area")
  np.testing.assert_allclose(out.iou, [2 / 4, 3 / 5])
  # The mask itself as the map is perfect at every level; a zero map has no
  # mass at all.
  perfect = metrics.iou_curve(mask.astype(float), mask)
  np.testing.assert_array_equal(perfect.levels, [0.05, 0.1, 0.2, 0.5])
  np.testing.assert_allclose(perfect.iou, 1.0)
  assert perfect.auc == pytest.approx(1.0)
  zero = metrics.iou_curve(np.zeros((4, 4)), mask)
  np.testing.assert_array_equal(zero.iou, 0.0)
  # A constant map ranks every pixel equal: by area, it keeps them all.
  flat = metrics.iou_curve(np.ones((4, 4)), mask, by="area")
  np.testing.assert_allclose(flat.iou, 4 / 16)


def test_iou_curve_batch_equals_single(rng):
  maps = rng.normal(size=(3, 10, 10))
  masks = rng.random((3, 10, 10)) < 0.3
  out = metrics.iou_curve(maps, masks)
  assert out.iou.shape == (3, 4) and out.auc.shape == (3,)
  for i in range(3):
    one = metrics.iou_curve(maps[i], masks[i])
    np.testing.assert_array_equal(out.iou[i], one.iou)
    assert out.auc[i] == one.auc


@pytest.mark.parametrize("kwargs, match", [
    (dict(levels=(0.5, 0.2)), r"`levels` \(=\(0.5, 0.2\)\) must be increasing"),
    (dict(levels=(0.0, 0.5)), r"`levels` .* in \(0, 1\]"),
    (dict(levels=(0.5, 1.5)), r"`levels` .* in \(0, 1\]"),
    (dict(levels=()), r"`levels` \(=\(\)\)"),
    (dict(by="pixels"), r"`by` \(='pixels'\) must be 'mass' or 'area'"),
])
def test_iou_curve_errors(kwargs, match):
  m, mask = _iou_case()
  with pytest.raises(ValueError, match=match):
    metrics.iou_curve(m, mask, **kwargs)


# --- region perturbation -----------------------------------------------------

_W = np.array([[4.0, 4.0, 1.0, 1.0],
               [4.0, 4.0, 1.0, 1.0],
               [2.0, 2.0, 3.0, 3.0],
               [2.0, 2.0, 3.0, 3.0]])  # 2x2 regions summing to 16, 4, 8, 12


def _linear_probs(batch):
  """p(class 0) = w . x / 40 on images of ones; class 1 takes the rest."""
  s = (batch[..., 0] * _W).sum(axis=(1, 2)) / 40.0
  return np.stack([s, 1.0 - s], axis=1)


def test_region_perturbation_on_a_linear_model():
  image = np.ones((4, 4, 1))
  out = metrics.region_perturbation(_linear_probs, image, _W, baseline="zero",
                                    patch=2)
  # Most relevant first: the regions of 16, 12, 8, then 4 (of 40).
  np.testing.assert_allclose(out.curve, [1.0, 0.6, 0.3, 0.1, 0.0])
  np.testing.assert_array_equal(out.regions, [0, 1, 2, 3, 4])
  assert out.aopc == pytest.approx((0 + 0.4 + 0.7 + 0.9 + 1.0) / 5)
  assert out.target == 0 and out.random_curve is None
  assert out.random_aopc is None
  # Following class 1 instead, with two steps.
  other = metrics.region_perturbation(_linear_probs, image, _W,
                                      baseline=0.0, patch=2, steps=2, target=1)
  np.testing.assert_allclose(other.curve, [0.0, 0.4, 0.7])


def test_region_perturbation_random_order_is_a_permutation_and_worse():
  image = np.ones((4, 4, 1))
  out = metrics.region_perturbation(_linear_probs, image, _W, baseline="zero",
                                    patch=2, key=jax.random.key(3))
  removed = np.diff(1.0 - out.random_curve) * 40.0
  np.testing.assert_allclose(np.sort(removed), [4, 8, 12, 16])
  # On a linear model with positive weights the map's order is optimal.
  assert out.random_aopc <= out.aopc
  again = metrics.region_perturbation(_linear_probs, image, _W,
                                      baseline="zero", patch=2, key=3)
  np.testing.assert_array_equal(again.random_curve, out.random_curve)


def test_region_perturbation_random_maps_at_chance(rng):
  # Removing k of 4 regions at random takes k * 10 of 40 on average, so the
  # expected AOPC of an uninformative map is mean(k / 4) = 0.5.
  image = np.ones((4, 4, 1))
  aopc = [metrics.region_perturbation(_linear_probs, image,
                                      rng.random((4, 4)), baseline="zero",
                                      patch=2).aopc for _ in range(300)]
  se = np.std(aopc) / np.sqrt(len(aopc))
  assert abs(np.mean(aopc) - 0.5) < 3 * se


def test_region_perturbation_border_regions_and_mean_baseline():
  image = np.zeros((5, 5, 3))
  image[..., 0], image[..., 1] = 1.0, 3.0
  image[0, 0] = (7.0, 7.0, 7.0)
  relevance = np.zeros((5, 5))
  relevance[4, 4] = 1.0  # the 1-pixel corner region (patch 2 on 5 px)
  relevance[0, 0] = 0.5  # a 2x2 region of mean 0.125: second
  seen = []

  def predict(batch):
    seen.append(batch.copy())
    return np.ones((len(batch), 2)) / 2

  out = metrics.region_perturbation(predict, image, relevance,
                                    baseline="mean", patch=2, steps=2,
                                    batch_size=2)
  assert [len(b) for b in seen] == [2, 1]
  step1, step2 = seen[0][1], seen[1][0]
  mean = image.reshape(-1, 3).mean(0)
  changed = (step1 != image).any(-1)
  assert changed.sum() == 1 and changed[4, 4]
  np.testing.assert_allclose(step1[4, 4], mean)
  changed = (step2 != image).any(-1)
  assert changed.sum() == 5 and changed[:2, :2].all()
  np.testing.assert_allclose(step2[:2, :2], np.broadcast_to(mean, (2, 2, 3)))
  assert out.target == 0  # tied probabilities: the first class
  # uint8 images get the rounded mean colour.
  img8 = np.zeros((4, 4, 1), np.uint8)
  img8[0, 0] = 7  # mean 7/16 -> 0; a float baseline is rounded too
  seen.clear()
  metrics.region_perturbation(predict, img8, np.eye(4), baseline=200.4,
                              patch=4, steps=1)
  assert seen[0].dtype == np.uint8 and (seen[0][1] == 200).all()


def test_region_perturbation_errors():
  image = np.ones((4, 4, 1))
  with pytest.raises(TypeError, match="baseline"):
    metrics.region_perturbation(_linear_probs, image, _W)  # pylint: disable=missing-kwoa
  with pytest.raises(ValueError, match=r"`baseline` \(='min'\) must be one "
                     r"of \('mean', 'zero'\)"):
    metrics.region_perturbation(_linear_probs, image, _W, baseline="min", patch=2)
  with pytest.raises(ValueError, match=r"`baseline` \(shape=\(2,\)\)"):
    metrics.region_perturbation(_linear_probs, image, _W, baseline=[0, 1],
                                patch=2)
  with pytest.raises(ValueError, match=r"`patch` \(=5\) must be an integer "
                     r"in 1..4"):
    metrics.region_perturbation(_linear_probs, image, _W, baseline=0,
                                patch=5)
  with pytest.raises(ValueError, match=r"`steps` \(=5\) must be an integer "
                     r"in 1..4 \(the number of regions\)"):
    metrics.region_perturbation(_linear_probs, image, _W, baseline=0,
                                patch=2, steps=5)
  with pytest.raises(ValueError, match=r"`target` \(=2\) must be a class "
                     r"index in 0..1"):
    metrics.region_perturbation(_linear_probs, image, _W, baseline=0,
                                patch=2, target=2)
  with pytest.raises(ValueError, match=r"returned shape \(17,\) for 17 "
                     "images; it must return one row"):
    metrics.region_perturbation(lambda b: b.sum((1, 2, 3)), image, _W,
                                baseline=0, patch=1)
  with pytest.raises(ValueError, match=r"`key` \(='a'\) must be a JAX PRNG"):
    metrics.region_perturbation(_linear_probs, image, _W, baseline=0,
                                patch=2, key="a")


def test_pixel_flipping_takes_the_named_baselines():
  image = np.zeros((2, 2, 1))
  image[0, 0] = 4.0  # mean 1
  out = metrics.pixel_flipping(lambda b: b.sum((1, 2, 3)), image,
                               np.array([[0.0, 1.0], [0.0, 0.0]]), steps=1,
                               baseline="mean")
  np.testing.assert_allclose(out.curve, [4.0, 4.0])  # every pixel set to 1


# --- class sensitivity -------------------------------------------------------


def test_class_sensitivity_by_hand(rng):
  a = rng.normal(size=(2, 8, 8))
  out = metrics.class_sensitivity(a, np.stack([a[0], -a[1]]))
  np.testing.assert_allclose(out.per_image, [1.0, -1.0])
  assert out.mean == pytest.approx(0.0) and out.std == pytest.approx(1.0)
  b = rng.normal(size=(2, 8, 8))
  out = metrics.class_sensitivity(a, b, absolute=True)
  for i in range(2):
    want = stats.spearmanr(np.abs(a[i]).ravel(), np.abs(b[i]).ravel())
    assert out.per_image[i] == pytest.approx(want.statistic, abs=1e-12)
  single = metrics.class_sensitivity(a[0], b[0])
  assert single.per_image.shape == (1,) and single.std == 0.0
  with pytest.raises(ValueError, match=r"`maps_least` \(shape=\(8, 8\)\) must"
                     r" have the shape of `maps_most`"):
    metrics.class_sensitivity(a, b[0])


def test_class_sensitivity_of_independent_random_maps_is_zero(rng):
  out = metrics.class_sensitivity(rng.random((300, 8, 8)),
                                  rng.random((300, 8, 8)))
  assert abs(out.mean) < 3 * out.std / np.sqrt(300)


def test_extreme_classes():
  p = np.array([[0.1, 0.7, 0.2], [0.5, 0.1, 0.4]])
  most, least = metrics.extreme_classes(p)
  np.testing.assert_array_equal(most, [1, 0])
  np.testing.assert_array_equal(least, [0, 1])
  with pytest.raises(ValueError, match=r"`probabilities` \(shape=\(3,\)\)"):
    metrics.extreme_classes(p[0])


# --- model randomisation -----------------------------------------------------


def _two_layer_params(rng):
  return {"params": {"top": {"kernel": jnp.asarray(rng.normal(size=(8, 8))),
                             "bias": jnp.asarray(rng.normal(size=(8, 8)))},
                     "features": {"0": {"kernel": jnp.asarray(
                         rng.normal(size=(8, 8)))}}}}


def _explain(p, x):
  q = p["params"]
  return (q["top"]["kernel"] + q["top"]["bias"]) * q["features"]["0"][
      "kernel"] + x


def test_model_randomization_schedules_by_hand(rng, x64):
  p = _two_layer_params(rng)
  x = jnp.zeros((8, 8))
  top, bias = p["params"]["top"]["kernel"], p["params"]["top"]["bias"]
  low = p["params"]["features"]["0"]["kernel"]
  original = (top + bias) * low
  layers = ["top", "features/0"]

  def transpose(key, leaf):
    del key
    return leaf.T

  def similarity(m):
    return metrics.randomization_similarity(original, m, absolute=True)

  want = {
      "cascading": [similarity((top.T + bias.T) * low),
                    similarity((top.T + bias.T) * low.T)],
      "independent": [similarity((top.T + bias.T) * low),
                      similarity((top + bias) * low.T)],
  }
  for mode, steps in want.items():
    out = metrics.model_randomization(_explain, p, x, layers, key=0,
                                      mode=mode, reinit=transpose)
    assert out.mode == mode and out.layers == tuple(layers)
    np.testing.assert_allclose(out.spearman, [s.spearman for s in steps],
                               rtol=0, atol=1e-12)
    np.testing.assert_allclose(out.ssim, [s.ssim for s in steps],
                               rtol=0, atol=1e-12)


def test_model_randomization_default_draws(rng, x64):
  p = _two_layer_params(rng)
  x = jnp.zeros((8, 8))
  layers = ["top", "features/0"]
  cascading = metrics.model_randomization(_explain, p, x, layers, key=7)
  independent = metrics.model_randomization(_explain, p, x, layers, key=7,
                                            mode="independent")
  # Step 0 randomises the same layer with the same draw in both modes.
  assert cascading.spearman[0] == independent.spearman[0]
  assert cascading.ssim[0] == independent.ssim[0]
  # The map is made of the weights: it loses its similarity.
  assert np.all(cascading.spearman < 0.5)
  # A "method" that ignores the model keeps it at 1 (fails the check).
  blind = metrics.model_randomization(lambda q, x: x, p, jnp.asarray(
      rng.normal(size=(8, 8))), layers, key=7)
  np.testing.assert_allclose(blind.spearman, 1.0)
  np.testing.assert_allclose(blind.ssim, 1.0)
  # Maps shaped like x, channels last, are reduced as |map| summed.
  xc = jnp.ones((8, 8, 3))
  chan = metrics.model_randomization(
      lambda q, x: _explain(q, 0.0)[..., None] * x, p, xc, layers, key=7)
  np.testing.assert_allclose(chan.spearman, cascading.spearman)


def test_gaussian_like_keeps_shape_dtype_and_scale(x64):
  leaf = jnp.asarray(np.random.default_rng(1).normal(2.0, 3.0, (200, 50)))
  new = metrics.gaussian_like(jax.random.key(0), leaf)
  assert new.shape == leaf.shape and new.dtype == leaf.dtype
  assert abs(float(new.mean()) - float(leaf.mean())) < 0.1
  assert abs(float(new.std()) / float(leaf.std()) - 1) < 0.02
  assert abs(np.corrcoef(np.ravel(new), np.ravel(leaf))[0, 1]) < 0.05
  np.testing.assert_array_equal(
      new, metrics.gaussian_like(jax.random.key(0), leaf))
  ones = jnp.ones((3, 3))
  np.testing.assert_array_equal(
      metrics.gaussian_like(jax.random.key(0), ones), ones)


def test_model_randomization_errors(rng):
  p = _two_layer_params(rng)
  x = jnp.zeros((8, 8))
  with pytest.raises(ValueError, match=r"`layers` entry 'fc' holds no leaf of"
                     r" `params`; its layers are: params/features/0, "
                     r"params/top"):
    metrics.model_randomization(_explain, p, x, ["fc"], key=0)
  with pytest.raises(ValueError, match=r"`mode` \(='random'\) must be one of"):
    metrics.model_randomization(_explain, p, x, ["top"], key=0, mode="random")
  with pytest.raises(ValueError, match=r"`layers` \(='top'\) must be a "
                     "non-empty sequence"):
    metrics.model_randomization(_explain, p, x, "top", key=0)
  with pytest.raises(ValueError, match=r"`layers` \(=\[\]\)"):
    metrics.model_randomization(_explain, p, x, [], key=0)
  with pytest.raises(ValueError, match=r"`explain\(params, x\)` \(shape="
                     r"\(1, 8, 8, 2\)\) must be HxW or a batch"):
    metrics.model_randomization(lambda q, x: jnp.ones((1, 8, 8, 2)), p, x,
                                ["top"], key=0)


# --- complexity ----------------------------------------------------------------


def _gini_pairwise(m):
  """Gini as the mean absolute difference over twice the mean."""
  a = np.abs(m).ravel()
  return np.abs(a[:, None] - a[None]).sum() / (2 * a.size ** 2 * a.mean())


def test_gini_and_entropy_of_uniform_and_delta_maps():
  n = 6 * 7
  assert metrics.gini_sparseness(np.full((6, 7), 2.5)) == pytest.approx(
      0.0, abs=1e-15)
  assert metrics.map_entropy(np.full((6, 7), -2.5)) == pytest.approx(
      np.log(n), rel=1e-15)
  delta = np.zeros((6, 7))
  delta[2, 3] = -4.0
  assert metrics.gini_sparseness(delta) == pytest.approx((n - 1) / n,
                                                         rel=1e-15)
  assert metrics.map_entropy(delta) == 0.0
  # A zero map is taken as uniform.
  assert metrics.gini_sparseness(np.zeros((6, 7))) == 0.0
  assert metrics.map_entropy(np.zeros((6, 7))) == pytest.approx(np.log(n))


def test_gini_and_entropy_by_hand_and_against_references(rng):
  m = np.array([[1.0, -2.0], [3.0, 4.0]])
  assert metrics.gini_sparseness(m) == pytest.approx(0.25)
  assert metrics.map_entropy(np.array([[1.0, 1.0, -2.0]])) == pytest.approx(
      1.5 * np.log(2))
  maps = rng.normal(size=(3, 9, 11))
  gini = metrics.gini_sparseness(maps)
  ent = metrics.map_entropy(maps)
  assert gini.shape == ent.shape == (3,)
  for i in range(3):
    assert gini[i] == pytest.approx(_gini_pairwise(maps[i]), rel=1e-12)
    assert ent[i] == pytest.approx(
        stats.entropy(np.abs(maps[i]).ravel()), rel=1e-12)


def test_gini_of_uniform_noise_is_one_third(rng):
  # The Gini index of U(0, 1) is 1/3.
  assert metrics.gini_sparseness(rng.random((64, 64))) == pytest.approx(
      1 / 3, abs=0.01)
  with pytest.raises(ValueError, match=r"`map` \(shape=\(4,\)\) must be HxW"):
    metrics.gini_sparseness(np.ones(4))


# --- bootstrap -----------------------------------------------------------------


def test_bootstrap_ci_known_cases():
  assert metrics.bootstrap_ci([0.25] * 5, seed=0) == (0.25, 0.25, 0.25)
  # Two values: resampled means are 0, 1/2, 1 with chances 1/4, 1/2, 1/4.
  out = metrics.bootstrap_ci([0.0, 1.0], seed=1, n=2000)
  assert out == (0.5, 0.0, 1.0)
  same = metrics.bootstrap_ci([0.0, 1.0], key=jax.random.key(1), n=2000)
  assert same == out


def test_bootstrap_ci_of_a_mean_matches_the_normal_interval(rng):
  v = rng.normal(size=400)
  out = metrics.bootstrap_ci(v, seed=3, n=4000)
  half = 1.96 * v.std(ddof=1) / np.sqrt(v.size)
  assert out.estimate == pytest.approx(v.mean())
  assert out.low < v.mean() < out.high
  assert (out.high - out.low) / (2 * half) == pytest.approx(1.0, abs=0.1)
  med = metrics.bootstrap_ci(v, seed=3, statistic=np.median)
  assert med.estimate == pytest.approx(np.median(v))
  assert med.low < med.estimate < med.high
  other = metrics.bootstrap_ci(v, seed=4, n=4000)
  assert other.low != out.low


@pytest.mark.parametrize("kwargs, match", [
    (dict(values=[1.0]), r"exactly one of `key` and `seed`"),
    (dict(values=[1.0], seed=0, key=jax.random.key(0)), r"exactly one of"),
    (dict(values=[], seed=0), r"`values` \(shape=\(0,\)\) must be a non-empty"),
    (dict(values=[1.0, np.nan], seed=0), r"`values` .* finite"),
    (dict(values=[[1.0]], seed=0), r"`values` \(shape=\(1, 1\)\)"),
    (dict(values=[1.0], seed=0, n=0), r"`n` \(=0\) must be an integer >= 1"),
    (dict(values=[1.0], seed=0, level=1.0), r"`level` \(=1.0\) must be in"),
    (dict(values=[1.0], seed=0.5), r"`seed` \(=0.5\) must be a JAX PRNG key"),
])
def test_bootstrap_ci_errors(kwargs, match):
  with pytest.raises(ValueError, match=match):
    metrics.bootstrap_ci(**kwargs)
