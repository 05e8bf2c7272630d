"""Tests of the synthetic flower dataset (`sr_jax.data.synthetic`)."""

import numpy as np
import pytest
from PIL import Image

from sr_jax.data import synthetic

NUM_CLASSES = len(synthetic.CLASS_NAMES)


@pytest.fixture(scope="module")
def histogram_data():
  """1000 images of one seed to fit on, 1000 of another to test on."""
  return synthetic.make_batch(11, 0, 1000), synthetic.make_batch(12, 0, 1000)


def _hues(image, mask):
  """Pixel counts of the mask per palette hue (largest cosine similarity)."""
  x = image[mask].astype(np.float64)
  pal = synthetic.PALETTE.astype(np.float64)
  cos = (x @ pal.T) / (np.linalg.norm(x, axis=1, keepdims=True)
                       * np.linalg.norm(pal, axis=1) + 1e-9)
  return np.bincount(cos.argmax(1), minlength=len(pal))


def _colour_histograms(images, bins=8):
  """Normalized 3-D RGB histograms (bins**3 features per image)."""
  q = images.astype(np.int64) * bins // 256
  code = (q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]
  h = np.stack([np.bincount(c.ravel(), minlength=bins ** 3) for c in code])
  return h / h.sum(1, keepdims=True)


def _nearest_centroid(x, y, x_test, k):
  centroids = np.stack([x[y == c].mean(0) for c in range(k)])
  return ((x_test[:, None] - centroids[None]) ** 2).sum(-1).argmin(1)


def _logistic_regression(x, y, x_test, k, steps=500, lr=0.5, l2=1e-3):
  """Multinomial logistic regression by full-batch gradient descent."""
  mu, sd = x.mean(0), x.std(0) + 1e-8
  x, x_test = (x - mu) / sd, (x_test - mu) / sd
  w, b, onehot = np.zeros((x.shape[1], k)), np.zeros(k), np.eye(k)[y]
  for _ in range(steps):
    z = x @ w + b
    p = np.exp(z - z.max(1, keepdims=True))
    g = (p / p.sum(1, keepdims=True) - onehot) / len(y)
    w -= lr * (x.T @ g + l2 * w)
    b -= lr * g.sum(0)
  return (x_test @ w + b).argmax(1)


def test_shapes_dtypes_and_ranges():
  images, labels, masks = synthetic.make_batch(0, 3, 5)
  assert images.shape == (5, 64, 64, 3) and images.dtype == np.uint8
  assert labels.shape == (5,) and labels.dtype == np.int32
  assert masks.shape == (5, 64, 64) and masks.dtype == bool
  assert ((labels >= 0) & (labels < NUM_CLASSES)).all()
  image, label, mask = synthetic.sample(0, 0, size=96)
  assert image.shape == (96, 96, 3) and mask.shape == (96, 96)
  assert isinstance(label, int)


def test_at_least_eight_named_classes_and_a_palette_of_distinct_hues():
  assert NUM_CLASSES >= 8 and len(set(synthetic.CLASS_NAMES)) == NUM_CLASSES
  pal = synthetic.PALETTE
  assert pal.shape == (synthetic.NUM_HUES, 3) and NUM_CLASSES < len(pal)
  d = np.linalg.norm(pal[:, None] - pal[None], axis=-1)
  assert d[~np.eye(len(pal), dtype=bool)].min() > 60


def test_deterministic_and_independent_of_batching():
  images, labels, masks = synthetic.make_batch(7, 10, 6)
  again = synthetic.make_batch(7, 10, 6)
  np.testing.assert_array_equal(images, again[0])
  np.testing.assert_array_equal(masks, again[2])
  # Sample i depends on (seed, i) only: any batch, any order, one at a time.
  for i in (13, 10, 15):
    image, label, mask = synthetic.sample(7, i)
    np.testing.assert_array_equal(image, images[i - 10])
    np.testing.assert_array_equal(mask, masks[i - 10])
    assert label == labels[i - 10]
  shifted = synthetic.make_batch(7, 12, 2)
  np.testing.assert_array_equal(shifted[0], images[2:4])


@pytest.mark.parametrize("size", [32, 64, 100])
def test_windowed_rendering_equals_rendering_the_whole_image(size):
  """Each part is drawn only in a window around it; nothing may be cut."""
  draws = synthetic._stack([synthetic._draw(9, i, size) for i in range(24)])
  fast = synthetic._render(draws, size)
  full = synthetic._render(draws, size, windowed=False)
  np.testing.assert_array_equal(fast[0], full[0])
  np.testing.assert_array_equal(fast[1], full[1])


def test_part_hues_give_the_class_and_are_each_uniform():
  _, labels, _ = synthetic.make_batch(6, 0, 50)
  petal, centre = synthetic.part_hues(6, 0, 50)
  np.testing.assert_array_equal((centre - petal - 1) % synthetic.NUM_HUES,
                                labels)
  petal, centre = synthetic.part_hues(6, 0, 4000)
  for hues in (petal, centre):
    counts = np.bincount(hues, minlength=synthetic.NUM_HUES)
    assert np.abs(counts / 4000 - 1 / synthetic.NUM_HUES).max() < 0.02


def test_seeds_and_indices_differ():
  a, b = synthetic.make_batch(0, 0, 8)[0], synthetic.make_batch(1, 0, 8)[0]
  c = synthetic.make_batch(0, 8, 8)[0]
  for x, y in ((a, b), (a, c)):
    # Every image differs from its counterpart in most pixels.
    changed = (x != y).any(-1).mean((1, 2))
    assert changed.min() > 0.5


def test_every_class_present_and_roughly_balanced():
  _, labels, _ = synthetic.make_batch(3, 0, 400)
  counts = np.bincount(labels, minlength=NUM_CLASSES)
  assert counts.min() > 0.5 * 400 / NUM_CLASSES, counts
  assert counts.max() < 1.5 * 400 / NUM_CLASSES, counts


def test_masks_nonempty_inside_the_image_and_a_sensible_size():
  _, _, masks = synthetic.make_batch(4, 0, 200)
  area = masks.mean((1, 2))
  assert area.min() > 0.01 and area.max() < 0.25, (area.min(), area.max())
  # The petals and the centre are never cut by the border.
  border = np.concatenate([masks[:, 0], masks[:, -1], masks[:, :, 0],
                           masks[:, :, -1]], axis=1)
  assert not border.any()


def test_class_is_read_from_the_masked_pixels_alone():
  """An oracle on the mask: the commonest hue is the petals', the next the
  centre's, and the class is the hue step between them minus one."""
  images, labels, masks = synthetic.make_batch(5, 0, 300)
  for image, label, mask in zip(images, labels, masks):
    petal, centre = np.argsort(_hues(image, mask))[::-1][:2]
    assert (centre - petal - 1) % synthetic.NUM_HUES == label


def test_global_colour_histogram_does_not_tell_the_class(histogram_data):
  (xa, ya, ma), (xb, yb, mb) = histogram_data
  ha, hb = _colour_histograms(xa), _colour_histograms(xb)
  chance = 1.0 / NUM_CLASSES
  acc_nc = np.mean(_nearest_centroid(ha, ya, hb, NUM_CLASSES) == yb)
  acc_lr = np.mean(_logistic_regression(ha, ya, hb, NUM_CLASSES) == yb)
  assert acc_nc < 2 * chance and acc_lr < 2 * chance, (acc_nc, acc_lr)
  # The probe itself can read a part's colour: the petals' hue, which is
  # not the class, is in the global histogram.
  petals_a = np.array([np.argmax(_hues(x, m)) for x, m in zip(xa, ma)])
  petals_b = np.array([np.argmax(_hues(x, m)) for x, m in zip(xb, mb)])
  acc_petals = np.mean(_logistic_regression(
      ha, petals_a, hb, synthetic.NUM_HUES) == petals_b)
  assert acc_petals > 4.0 / synthetic.NUM_HUES, acc_petals


def test_sample_image_writes_the_demo_png(tmp_path):
  path = tmp_path / "flower.png"
  image = synthetic.sample_image(path, index=3)
  np.testing.assert_array_equal(
      image, synthetic.sample(synthetic.SAMPLE_SEED, 3)[0])
  np.testing.assert_array_equal(np.asarray(Image.open(path)), image)
  assert synthetic.sample_image().shape == (64, 64, 3)


@pytest.mark.parametrize("kwargs, match", [
    (dict(seed=-1, start=0, count=1), r"`seed` \(=-1\) must be a non-negative"),
    (dict(seed=0, start=-2, count=1), r"`start` \(=-2\) must be"),
    (dict(seed=0, start=0, count=0), r"`count` \(=0\) must be a positive"),
    (dict(seed=0, start=0, count=1, size=16), r"`size` \(=16\) must be .*32"),
    (dict(seed=1.5, start=0, count=1), r"`seed` \(=1.5\)"),
])
def test_bad_arguments_are_named(kwargs, match):
  with pytest.raises(ValueError, match=match):
    synthetic.make_batch(**kwargs)


# --- variants ------------------------------------------------------------------


def test_default_variant_is_double_bit_for_bit():
  a = synthetic.make_batch(8, 3, 6)
  b = synthetic.make_batch(8, 3, 6, variant="double")
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)
  for x, y in zip(synthetic.part_hues(8, 3, 6),
                  synthetic.part_hues(8, 3, 6, variant="double")):
    np.testing.assert_array_equal(x, y)
  assert synthetic.class_names() == synthetic.CLASS_NAMES
  assert synthetic.class_names("double") == synthetic.CLASS_NAMES


def test_single_variant_changes_only_the_centre_and_its_mask():
  images_d, labels_d, masks_d = synthetic.make_batch(5, 0, 60)
  images_s, labels_s, masks_s = synthetic.make_batch(5, 0, 60,
                                                     variant="single")
  np.testing.assert_array_equal(labels_s, labels_d)  # the same draws
  # The mask is the centre: non-empty, inside the double mask (petals and
  # centre), and strictly smaller.
  assert masks_s.any((1, 2)).all()
  assert not (masks_s & ~masks_d).any()
  assert (masks_s.sum((1, 2)) < masks_d.sum((1, 2))).all()
  # Only pixels of the centre change colour between the variants.
  changed = (images_s != images_d).any(-1)
  assert not (changed & ~masks_s).any()
  petal_d, centre_d = synthetic.part_hues(5, 0, 60)
  petal_s, centre_s = synthetic.part_hues(5, 0, 60, variant="single")
  np.testing.assert_array_equal(petal_s, petal_d)
  np.testing.assert_array_equal(centre_s, labels_s)
  assert changed.any((1, 2)).sum() == np.count_nonzero(centre_s != centre_d)


def test_single_variant_class_is_the_centre_hue_read_from_the_mask():
  images, labels, masks = synthetic.make_batch(6, 0, 200, variant="single")
  for image, label, mask in zip(images, labels, masks):
    assert np.argmax(_hues(image, mask)) == label
  # The petals' hue does not depend on the class.
  petal, _ = synthetic.part_hues(6, 0, 4000, variant="single")
  _, labels = synthetic.part_hues(6, 0, 4000, variant="single")
  joint = np.zeros((NUM_CLASSES, synthetic.NUM_HUES))
  np.add.at(joint, (labels, petal), 1)
  expected = np.outer(joint.sum(1), joint.sum(0)) / joint.sum()
  chi2 = ((joint - expected) ** 2 / expected).sum()
  dof = (NUM_CLASSES - 1) * (synthetic.NUM_HUES - 1)
  assert chi2 < dof + 4 * np.sqrt(2 * dof), chi2  # ~4 sigma of chi2(dof)
  names = synthetic.class_names("single")
  assert len(names) == NUM_CLASSES and len(set(names)) == NUM_CLASSES
  assert names[0] == "centre red"


def test_single_variant_sample_and_windowed_rendering():
  images, labels, masks = synthetic.make_batch(9, 4, 3, variant="single",
                                               size=48)
  image, label, mask = synthetic.sample(9, 5, variant="single", size=48)
  np.testing.assert_array_equal(image, images[1])
  np.testing.assert_array_equal(mask, masks[1])
  assert label == labels[1]
  draws = synthetic._stack([synthetic._draw(9, i, 48, "single")
                            for i in range(12)])
  parts = synthetic.VARIANTS["single"]
  fast = synthetic._render(draws, 48, parts=parts)
  full = synthetic._render(draws, 48, windowed=False, parts=parts)
  np.testing.assert_array_equal(fast[0], full[0])
  np.testing.assert_array_equal(fast[1], full[1])


def test_bad_variant_is_named():
  for call in (lambda: synthetic.make_batch(0, 0, 1, variant="triple"),
               lambda: synthetic.part_hues(0, 0, 1, variant="triple"),
               lambda: synthetic.sample(0, 0, variant="triple"),
               lambda: synthetic.class_names("triple")):
    with pytest.raises(ValueError, match=r"`variant` \(='triple'\) must be "
                       r"one of 'double', 'single'"):
      call()
