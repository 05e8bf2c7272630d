"""Tests of relevant-feature selection, interpretation and explanation
(`sr_jax.interpret.features`, `lasso`, `receptive_fields`,
`feature_explanations`; Oramas et al., ICLR 2019)."""

import itertools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize

from sr_jax import attribution
from sr_jax.core.backward import model_graph, target_message
from sr_jax.core.interpret import evaluate
from sr_jax.core.models import as_function
from sr_jax.data import synthetic
from sr_jax.interpret import features as F
from sr_jax.interpret import feature_explanations as E
from sr_jax.interpret import lasso
from sr_jax.interpret import receptive_fields as R
from sr_jax.models import load_model, normalize
from sr_jax.models.small import DEMO_CFG

REPO = Path(__file__).resolve().parents[1]
C = 4  # classes of the small function model
TRACES = []


def cnn(p, x):
  """conv 3x3 SAME, relu, 2x2 max-pool, conv 3x3 SAME, relu, mean, dense."""
  TRACES.append(x.shape)
  dn = ("NHWC", "HWIO", "NHWC")
  conv = lambda v, q: jax.lax.conv_general_dilated(  # noqa: E731
      v, q["kernel"], (1, 1), "SAME", dimension_numbers=dn) + q["bias"]
  h = jax.nn.relu(conv(x, p["conv1"]))
  h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 2, 2, 1),
                            (1, 2, 2, 1), "VALID")
  h = jax.nn.relu(conv(h, p["conv2"]))
  return h.mean((1, 2)) @ p["dense"]["kernel"] + p["dense"]["bias"]


def cnn_params(rng, dtype=np.float32):
  p = {"conv1": {"kernel": rng.normal(size=(3, 3, 3, 5)) * 0.5,
                 "bias": rng.normal(size=5) * 0.1},
       "conv2": {"kernel": rng.normal(size=(3, 3, 5, 6)) * 0.3,
                 "bias": rng.normal(size=6) * 0.1},
       "dense": {"kernel": rng.normal(size=(6, C)), "bias": np.zeros(C)}}
  return jax.tree.map(lambda a: jnp.asarray(a, dtype), p)


def np_conv(x, k, b):
  """SAME 3x3 convolution, float64, written out."""
  xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  h, w = x.shape[1:3]
  out = np.zeros(x.shape[:3] + (k.shape[-1],))
  for i, j in itertools.product(range(3), range(3)):
    out += xp[:, i:i + h, j:j + w] @ k[i, j]
  return out + b


def np_layers(p, x):
  """The four default taps of `cnn`, in NumPy float64."""
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), p)
  z1 = np_conv(x, p["conv1"]["kernel"], p["conv1"]["bias"])
  a1 = np.maximum(z1, 0)
  n, h, w, c = a1.shape
  pooled = a1.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))
  z2 = np_conv(pooled, p["conv2"]["kernel"], p["conv2"]["bias"])
  return [z1, a1, z2, np.maximum(z2, 0)]


def np_features(maps):
  parts = []
  for a in maps:
    r = (a ** 2).sum(axis=(1, 2))
    parts.append(r / r.sum(axis=1, keepdims=True))
  v = np.concatenate(parts, axis=1)
  return v / np.linalg.norm(v, axis=1, keepdims=True)


# Features -------------------------------------------------------------------


def test_pooled_features_match_a_float64_numpy_reference(x64, rng):
  p = cnn_params(rng, np.float64)
  x = rng.normal(size=(5, 8, 8, 3))
  taps = F.taps_for(cnn, p, x)
  assert F.default_layers(taps) == ("conv1", "conv1/relu", "conv2",
                                    "conv2/relu")
  maps = np_layers(p, x)
  got, peaks = F.features(cnn, p, jnp.asarray(x), batch_size=2, peaks=True,
                          progress=False)
  assert got.dtype == jnp.float64 and got.shape == (5, 2 * 5 + 2 * 6)
  np.testing.assert_allclose(np.asarray(got), np_features(maps), rtol=1e-12,
                             atol=0)
  want = np.concatenate([a.reshape(5, -1, a.shape[-1]).argmax(axis=1)
                         for a in maps], axis=1)
  np.testing.assert_array_equal(np.asarray(peaks), want)
  one = F.features(cnn, p, jnp.asarray(x), layers=["conv2/relu"],
                   progress=False)
  np.testing.assert_allclose(np.asarray(one), np_features(maps[3:]),
                             rtol=1e-12, atol=0)


def test_bad_layers_and_options_are_named(rng):
  p = cnn_params(rng)
  x = jnp.zeros((2, 8, 8, 3))
  with pytest.raises(ValueError, match=re.escape(
      "Unknown `layers` entry (='conv9'); the model's feature maps are: "
      "conv1, conv1/relu")):
    F.features(cnn, p, x, layers=["conv9"])
  with pytest.raises(ValueError, match="`layers` entry 'dense'.*no two "
                     "spatial axes"):
    F.features(cnn, p, x, layers=["dense"])
  with pytest.raises(ValueError, match="names a layer twice"):
    F.features(cnn, p, x, layers=["conv1", "conv1"])
  with pytest.raises(ValueError, match=r"`batch_size` \(=0\)"):
    F.features(cnn, p, x, batch_size=0)
  for mu in (0, -1.0, float("inf"), True):
    with pytest.raises(ValueError, match=re.escape(f"`mu` (={mu!r}) must be "
                                                   "a finite number > 0")):
      F.fit(cnn, p, x, [0, 1], mu=mu)
  with pytest.raises(ValueError, match=r"`labels` \(shape=\(2,\)"):
    F.fit(cnn, p, x, [0, C], mu=1.0)


# The L1-ball projection and the mu-lasso ------------------------------------


def brute_force_projection(v, z):
  """argmin ||w - v|| over ||w||_1 <= z by trying every support: on support
  S with signs of v, w_S = v_S - theta sign(v_S), theta fixed by
  ||w||_1 = z; the nearest feasible candidate wins."""
  if np.abs(v).sum() <= z:
    return v
  best, best_d = None, np.inf
  for k in range(1, v.size + 1):
    for s in itertools.combinations(range(v.size), k):
      s = list(s)
      theta = (np.abs(v[s]).sum() - z) / k
      w = np.zeros_like(v)
      w[s] = np.sign(v[s]) * (np.abs(v[s]) - theta)
      if np.all(np.abs(v[s]) - theta >= 0) and np.linalg.norm(w - v) < best_d:
        best, best_d = w, np.linalg.norm(w - v)
  return best


def test_l1_projection_known_cases(x64):
  cases = [([3.0, 1.0], 2.0, [2.0, 0.0]),
           ([0.5, -0.25], 2.0, [0.5, -0.25]),           # inside: unchanged
           ([-3.0, 3.0], 2.0, [-1.0, 1.0]),             # a tie splits evenly
           ([1.0, 1.0, 1.0, 1.0], 2.0, [0.5] * 4),
           ([0.0, -5.0, 1.0], 1.0, [0.0, -1.0, 0.0])]
  for v, z, want in cases:
    np.testing.assert_allclose(
        np.asarray(lasso.project_l1_ball(jnp.asarray(v), z)), want,
        rtol=0, atol=1e-15)


def test_l1_projection_matches_brute_force(x64, rng):
  vs = rng.normal(size=(40, 6)) * rng.uniform(0.1, 3, size=(40, 1))
  got = np.asarray(jax.jit(lasso.project_l1_ball)(jnp.asarray(vs), 1.5))
  for v, w in zip(vs, got):
    np.testing.assert_allclose(w, brute_force_projection(v, 1.5), rtol=0,
                               atol=1e-12)
  outside = np.abs(vs).sum(1) > 1.5
  np.testing.assert_allclose(np.abs(got[outside]).sum(1), 1.5, rtol=1e-12)


def test_mu_lasso_recovers_the_true_support(x64, rng):
  # 200 features, 100 examples, 5 true features, a little noise; mu below
  # ||w*||_1, so the constraint is active and the support is strict.
  n, m = 100, 200
  x = rng.normal(size=(n, m)) / np.sqrt(n)
  w = np.zeros((2, m))
  supports = [np.sort(rng.choice(m, 5, replace=False)) for _ in range(2)]
  for j, s in enumerate(supports):
    w[j, s] = (1 + rng.random(5)) * rng.choice([-1, 1], 5)
  y = x @ w.T + 0.01 * rng.normal(size=(n, 2))
  mu = 0.9 * np.abs(w).sum(1).min()
  out = lasso.mu_lasso(jnp.asarray(x), jnp.asarray(y), mu=float(mu),
                       tol=1e-9)
  assert float(out.gap.max()) <= 1e-9 and int(out.steps) < 10000
  weights = np.asarray(out.weights)
  for j, s in enumerate(supports):
    np.testing.assert_array_equal(np.flatnonzero(weights[j]), s)
    np.testing.assert_array_equal(np.sign(weights[j, s]), np.sign(w[j, s]))
    assert np.abs(weights[j]).sum() == pytest.approx(mu, rel=1e-9)


def test_mu_lasso_matches_scipy_on_a_small_problem(x64, rng):
  # The same problem split as w = u - v, u, v >= 0, sum(u + v) <= mu,
  # solved by SciPy's SLSQP.
  n, m, mu = 30, 8, 0.7
  x = rng.normal(size=(n, m))
  y = rng.normal(size=n)
  def f(uv):
    return 0.5 * np.sum((x @ (uv[:m] - uv[m:]) - y) ** 2)

  def grad(uv):
    g = x.T @ (x @ (uv[:m] - uv[m:]) - y)
    return np.concatenate([g, -g])

  ref = optimize.minimize(
      f, np.zeros(2 * m), jac=grad, method="SLSQP", bounds=[(0, None)] * 2 * m,
      constraints=[{"type": "ineq", "fun": lambda uv: mu - uv.sum(),
                    "jac": lambda uv: -np.ones(2 * m)}],
      options={"ftol": 1e-14, "maxiter": 1000})
  assert ref.success
  got = lasso.mu_lasso(jnp.asarray(x), jnp.asarray(y), mu=mu, tol=1e-12)
  np.testing.assert_allclose(np.asarray(got.weights[0]),
                             ref.x[:m] - ref.x[m:], rtol=0, atol=1e-6)


def test_mu_lasso_errors():
  x = jnp.ones((3, 2))
  with pytest.raises(ValueError, match=r"`mu` \(=0\.0\) must be a finite"):
    lasso.mu_lasso(x, jnp.ones(3), mu=0.0)
  with pytest.raises(ValueError, match=r"`steps` \(=0\)"):
    lasso.mu_lasso(x, jnp.ones(3), mu=1.0, steps=0)
  with pytest.raises(ValueError, match=r"`tol` \(=-1\)"):
    lasso.mu_lasso(x, jnp.ones(3), mu=1.0, tol=-1)
  with pytest.raises(ValueError, match="same N"):
    lasso.mu_lasso(x, jnp.ones(4), mu=1.0)


# Persistence ----------------------------------------------------------------


def test_save_load_round_trip(tmp_path, rng):
  w = rng.normal(size=(3, 7)).astype(np.float32)
  w[w < 0.5] = 0
  fitted = F.RelevantFeatures(("a", "b/relu"), (3, 4), 2.5, w)
  path = fitted.save(tmp_path / "sub" / "rf.safetensors")
  back = F.load(path)
  assert back.layers == fitted.layers and back.channels == (3, 4)
  assert back.mu == 2.5 and back.weights.dtype == np.float32
  np.testing.assert_array_equal(back.weights, w)
  assert [p.name for p in path.parent.iterdir()] == ["rf.safetensors"]
  assert back.describe(3) == ("b/relu", 0) and back.describe(2) == ("a", 2)
  np.testing.assert_array_equal(back.relevant(0), fitted.relevant(0))
  with pytest.raises(ValueError, match="is not a relevant-feature file"):
    F.load(REPO / "weights" / "demo_vgg.safetensors")
  with pytest.raises(FileNotFoundError):
    F.load(tmp_path / "missing.safetensors")
  with pytest.raises(ValueError, match=r"`weights` \(shape=\(3, 7\)\)"):
    F.RelevantFeatures(("a",), (3,), 1.0, w)
  with pytest.raises(ValueError, match="`mu`"):
    F.RelevantFeatures(("a", "b"), (3, 4), -1.0, w)


# Explanations ---------------------------------------------------------------


def one_layer(p, x):
  """conv 3x3 SAME, relu, mean, dense: back-projection written out below."""
  z = jax.lax.conv_general_dilated(x, p["conv"]["kernel"], (1, 1), "SAME",
                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))
  a = jax.nn.relu(z + p["conv"]["bias"])
  return a.mean((1, 2)) @ p["dense"]["kernel"]


def test_explanation_matches_the_back_projection_written_out(x64, rng):
  p = {"conv": {"kernel": rng.normal(size=(3, 3, 3, 5)),
                "bias": rng.normal(size=5) * 0.3},
       "dense": {"kernel": rng.normal(size=(5, 2))}}
  p = jax.tree.map(jnp.asarray, p)
  x = rng.normal(size=(2, 7, 6, 3))
  weights = np.array([[0.5, 0.0, 0.3, -0.4, 0.2], [0.0, 0.1, 0.0, 0.0, 0.0]])
  fitted = F.RelevantFeatures(("conv/relu",), (5,), 1.5, weights)
  weights = fitted.weights.astype(np.float64)  # stored as float32
  got, chosen, scores = E.explain(one_layer, p, jnp.asarray(x),
                                  fitted=fitted, target=[0, 1],
                                  return_features=True)
  k = np.asarray(p["conv"]["kernel"])
  a = np.maximum(np_conv(x, k, np.asarray(p["conv"]["bias"])), 0)
  feats = np_features([a])
  for i, c in enumerate([0, 1]):
    score = feats[i] * weights[c] / weights[c].sum()
    order = np.argsort(-score)[:3]
    np.testing.assert_array_equal(np.asarray(chosen[i]), order)
    np.testing.assert_allclose(np.asarray(scores[i]), score[order],
                               rtol=1e-12)
    heats = []
    for f in order[score[order] > 0]:
      # Guided backprop through the ReLU passes the seed a_f (>= 0, and > 0
      # only where the input is); the conv's transpose spreads it.
      g = np.zeros_like(x[i])
      ap = np.pad(a[i, ..., f], 1)
      for di, dj in itertools.product(range(3), range(3)):
        g += (ap[2 - di:2 - di + 7, 2 - dj:2 - dj + 6, None]
              * k[di, dj, :, f])
      h = np.sqrt((np.maximum(g, 0) ** 2).sum(-1))
      heats.append((h - h.min()) / (h.max() - h.min()))
    want = np.max(heats, axis=0)
    np.testing.assert_allclose(np.asarray(got[i]),
                               np.broadcast_to(want[..., None], x[i].shape),
                               rtol=0, atol=1e-12)
  assert int((np.asarray(scores[1]) > 0).sum()) == 1  # one positive feature


@pytest.fixture
def registry():
  saved = dict(attribution.METHODS)
  yield
  attribution.METHODS.clear()
  attribution.METHODS.update(saved)


def test_registered_method_keeps_the_contract(registry, rng):
  p = cnn_params(rng)
  x = jnp.asarray(rng.normal(size=(24, 8, 8, 3)), jnp.float32)
  labels = rng.integers(0, C, size=24)
  fitted = F.fit(cnn, p, x, labels, mu=1.0, progress=False)
  assert all(len(fitted.relevant(c)) for c in range(C))
  method = E.register_relevant_features(fitted)
  assert attribution.get_method("relevant_features") is method
  xs = x[:3]
  m = method(cnn, p, xs)
  assert m.shape == xs.shape and m.dtype == xs.dtype
  assert np.all(np.isfinite(np.asarray(m))) and 0 <= float(m.min())
  assert float(m.max()) == 1.0
  logits = cnn(p, xs)
  np.testing.assert_array_equal(m, method(cnn, p, xs, target=np.asarray(
      logits.argmax(-1))))
  t = [1, 3, 0]
  batch = np.asarray(method(cnn, p, xs, target=t))
  for i in range(3):
    np.testing.assert_allclose(batch[i:i + 1], np.asarray(
        method(cnn, p, xs[i:i + 1], target=t[i])), rtol=1e-5, atol=1e-6)
  TRACES.clear()
  method(cnn, p, xs + 1.0, target=[2, 2, 1])
  assert not TRACES, f"traced the model again: {TRACES}"
  with pytest.raises(ValueError, match=re.escape(target_message(C, 3, C))):
    method(cnn, p, xs, target=C)
  with pytest.raises(ValueError, match=r"`top` \(=0\)"):
    method(cnn, p, xs, top=0)
  with pytest.raises(ValueError, match=r"`backprop` \(='gradient'\)"):
    method(cnn, p, xs, backprop="gradient")
  other = F.RelevantFeatures(("conv7",), (5,), 1.0, np.ones((C, 5)))
  with pytest.raises(ValueError, match="fitted on layer 'conv7', which the "
                     "model lacks; its layers are: conv1, conv1/relu"):
    method(cnn, p, xs, fitted=other)
  with pytest.raises(ValueError, match=r"`fitted` \(=None\)"):
    E.relevant_features(cnn, p, xs)


# The demo model -------------------------------------------------------------


def closed_form_fields():
  """The receptive fields of DEMO_CFG by the usual recurrence: a k x k conv
  with padding p grows the field by (k - 1) * jump and moves its start by
  -p * jump; a 2x2 pool of stride 2 grows it by jump and doubles the jump."""
  size, jump, start, out, i = 1, 1, 0, {}, 0
  for v in DEMO_CFG:
    if v == "M":
      size, jump = size + jump, 2 * jump
      i += 1
      continue
    size, start = size + 2 * jump, start - jump
    out[f"features_{i}"] = out[f"features_{i}/relu"] = R.ReceptiveField(
        (size,) * 2, (jump,) * 2, (start,) * 2)
    i += 2
  return out


@pytest.fixture(scope="module")
def demo():
  model, variables = load_model("demo_vgg")
  images, labels, _ = synthetic.make_batch(synthetic.TRAIN_SEED, 0, 400)
  x = normalize(images, "demo_vgg")
  feats, peaks = F.features(model, variables, x, peaks=True, progress=False)
  fitted = F.fit(model, variables, x, labels, mu=5.0, precomputed=feats)
  fields = R.receptive_fields(model, variables, (64, 64, 3))
  return model, variables, images, labels, feats, peaks, fitted, fields


def test_receptive_fields_of_the_demo_model_match_the_closed_form(demo):
  fields = demo[-1]
  assert fields == closed_form_fields()
  assert fields["features_13"].window((7, 0)) == ((29, 91), (-27, 35))


def test_selected_features_respond_inside_the_part_masks(demo):
  # Held-out images: per class, the energy density a^2 of its relevant
  # features (positive weight) inside its images' ground-truth part masks
  # over the density outside, against the same ratio of the features no
  # class selects.
  model, variables, *_, fitted, _ = demo
  images, labels, masks = synthetic.make_batch(synthetic.EVAL_SEED, 0, 200)
  x = normalize(images, "demo_vgg")
  taps = F.taps_for(model, variables, x)
  fn, params = as_function(model, variables)
  _, acts = evaluate(model_graph(fn, params, x), params, x,
                     taps=fitted.layers)
  acts = {k: np.asarray(a) for k, a in acts.items()}

  def density_ratio(feature_ids, sel):
    inside = outside = 0.0
    for f in feature_ids:
      layer, channel = fitted.describe(int(f))
      a = acts[layer][sel, ..., channel] ** 2
      h = taps[layer].shape[1]
      m = masks[sel].reshape(-1, h, 64 // h, h, 64 // h).mean(axis=(2, 4))
      inside += (a * m).sum() / m.sum()
      outside += (a * (1 - m)).sum() / (1 - m).sum()
    return inside / outside

  unselected = np.flatnonzero(~np.any(fitted.weights != 0, axis=0))
  ratios = {}
  for c in range(fitted.num_classes):
    sel = labels == c
    chosen = fitted.relevant(c)
    chosen = chosen[fitted.weights[c, chosen] > 0]
    assert chosen.size >= 3
    ratios[c] = (density_ratio(chosen, sel), density_ratio(unselected, sel))
  print("inside/outside energy density, selected vs unselected: " + ", ".join(
      f"{c}: {s:.1f} vs {u:.1f}" for c, (s, u) in ratios.items()))
  for c, (selected, other) in ratios.items():
    assert selected > 2.0 and selected > other, (c, selected, other)


def test_average_visualisations_and_explanations_of_the_demo_model(demo):
  model, variables, images, labels, feats, peaks, fitted, fields = demo
  views = R.average_visualisations(fitted, model, variables, images, feats,
                                   peaks, top=4, max_features=3,
                                   fields=fields)
  assert len(views) == fitted.num_classes
  for c, row in enumerate(views):
    assert 1 <= len(row) <= 3 and [v.weight for v in row] == sorted(
        (v.weight for v in row), reverse=True)
    for v in row:
      assert v.image.shape == fields[v.layer].size + (3,)
      assert v.image.dtype == np.uint8 and len(v.sources) == 4
      np.testing.assert_array_equal(
          v.sources, np.argsort(-np.asarray(feats)[:, v.index],
                                kind="stable")[:4])
  shown, _, masks = synthetic.make_batch(synthetic.SAMPLE_SEED, 0, 4)
  m = np.asarray(E.explain(model, variables, normalize(shown, "demo_vgg"),
                           fitted=fitted))[..., 0]
  assert m.shape == (4, 64, 64) and np.all(np.isfinite(m))
  inside = np.mean([m[i][masks[i]].mean() for i in range(4)])
  outside = np.mean([m[i][~masks[i]].mean() for i in range(4)])
  assert inside > 2 * outside


def test_script_writes_the_files_and_reports_bad_values(tmp_path):
  out = tmp_path / "out"
  args = ["--model=demo_vgg", "--mu=5", "--count=48", "--top=2",
          "--explain=1", f"--out={out}"]
  proc = subprocess.run(
      [sys.executable, "-m", "sr_jax.scripts.relevant_features", *args],
      cwd=REPO, env=dict(os.environ), capture_output=True, text=True,
      timeout=600, check=False)
  assert proc.returncode == 0, proc.stderr
  assert sorted(p.name for p in out.iterdir()) == sorted(
      [f"class_{c}.png" for c in range(8)] + [
          "explanations.png", "relevant_features.json",
          "relevant_features.png", "relevant_features.safetensors"])
  summary = json.loads((out / "relevant_features.json").read_text())
  fitted = F.load(out / "relevant_features.safetensors")
  assert summary["mu"] == 5.0 and summary["layers"] == list(fitted.layers)
  for c, entry in enumerate(summary["classes"]):
    assert [f["index"] for f in entry["features"]] == list(
        fitted.relevant(c))
  assert len(summary["explanations"]) == 1
  bad = subprocess.run(
      [sys.executable, "-m", "sr_jax.scripts.relevant_features", "--mu=0",
       f"--out={out}"], cwd=REPO, capture_output=True, text=True,
      timeout=300, check=False)
  assert bad.returncode == 2
  errors = [l for l in bad.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1 and "`mu` (=0.0)" in errors[0], bad.stderr
