"""Tests for sr_jax.metrics on hand-made maps and masks with known answers."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from skimage.metrics import structural_similarity

from sr_jax import metrics


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
  # Constant maps normalise to zeros; SSIM(zeros, zeros) is exactly 1.
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
