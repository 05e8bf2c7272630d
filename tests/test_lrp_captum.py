"""Parity with Captum's `LRP` on the torch reference VGG-16 and AlexNet.

Both sides get the same random weights (torch's init scaled by sqrt(6), He's
variance, so that the logits of a 16-layer net do not vanish) and matching
rules. What Captum computes (captum/attr/_utils/lrp_rules.py, _core/lrp.py):
  * EpsilonRule(eps): z + eps*sign(z), sign(0) = +1, bias in z: our epsilon.
  * GammaRule(g, set_bias_to_zero=True): weights w + g*w+, no bias: our
    gamma(g, zero_bias=True). With the bias kept Captum leaves it unmodified
    (we, like zennit, use b + g*b+); a two-line custom rule matches it.
  * Alpha1_Beta0_Rule(set_bias_to_zero=True): x * w+ without splitting the
    input's sign: our zplus(zero_bias=True) for non-negative input (every
    layer but the first). With the bias kept Captum puts the signed bias in
    the denominator; again a custom rule matches it.
  * Max-pooling and adaptive average pooling get EpsilonRule(1e-9); we give
    them the same here (our composites keep max-pooling's plain gradient,
    which differs from it by a relative 1e-9 / activation).
  * ReLU passes relevance through; relevance starts at the target's logit.
In float32, epsilon 1e-6 on VGG-16 differs by ~1e-3 of max|R|: near-zero
denominators amplify the last-bit differences between torch's and XLA's
convolutions. The same comparison in float64 agrees to ~1e-12, so the float32
checks use epsilon 0.25 and the small epsilon is checked in float64. Torch
runs without oneDNN here (see `_plain_torch_convolutions`).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
captum_lrp = pytest.importorskip("captum.attr._utils.lrp_rules")
# pylint: disable=wrong-import-position
from captum.attr import LRP

from sr_jax import lrp, weights
from sr_jax.lrp import rules
from sr_jax.models import MaxPool2d, get_arch
from tests.reference import torch_models
# pylint: enable=wrong-import-position

pytestmark = pytest.mark.torch


@pytest.fixture(autouse=True)
def _plain_torch_convolutions():
  """Torch without oneDNN: its float32 convolutions are less accurate.

  With oneDNN, Captum's float32 relevance on VGG-16 at 224 is 2.6e-3 of
  max|R| away from the float64 result at one pixel; ours and Captum's
  without oneDNN are within 1e-5 of it.
  """
  enabled = torch.backends.mkldnn.enabled
  torch.backends.mkldnn.enabled = False
  yield
  torch.backends.mkldnn.enabled = enabled


@functools.lru_cache(maxsize=1)
def _models(arch):
  """The torch reference (He-scaled) and our model with the same weights."""
  torch.manual_seed(0)
  tm = torch_models.build(arch, seed=0)
  with torch.no_grad():
    for m in tm.modules():
      if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
        m.weight.mul_(6 ** 0.5)
  state = {k: v.detach().numpy().copy() for k, v in tm.state_dict().items()}
  return tm, get_arch(arch).module(), weights.convert_state_dict(state, arch)


def _captum(tm, x, target, first, conv, dense):
  """Captum's relevance (NHWC) with per-layer rules set as `module.rule`."""
  convs = [m for m in tm.modules() if isinstance(m, torch.nn.Conv2d)]
  for m in tm.modules():
    if isinstance(m, torch.nn.Conv2d):
      m.rule = first() if m is convs[0] else conv()
    elif isinstance(m, torch.nn.Linear):
      m.rule = dense()
  try:
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    r = LRP(tm).attribute(xt.requires_grad_(),
                          target=torch.tensor(np.asarray(target).tolist()))
  finally:
    for m in tm.modules():
      if hasattr(m, "rule"):
        del m.rule
  return r.detach().numpy().transpose(0, 2, 3, 1)


def _ours(model, variables, x, target, first, conv, dense):
  entries = ((lrp.is_type(MaxPool2d), rules.epsilon(1e-9)),) + lrp.layer_map(
      conv, dense, first=first, pool=rules.epsilon(1e-9))
  return np.asarray(lrp.relevance(model, variables, jnp.asarray(x),
                                  target=target,
                                  composite=lrp.Composite("captum", entries)))


def _captum_gamma_with_bias(g):
  """Captum's GammaRule keeping the bias: w + g w+, bias unmodified."""
  term = rules.Term(param_modifier=rules.map_params(
      lambda w: w + g * jnp.maximum(w, 0), lambda b: b))
  return rules.Rule((term,), rules.normalise(1e-9), rules.input_times_grad)


def _captum_alpha1_beta0_with_bias():
  """Captum's Alpha1_Beta0_Rule keeping the bias: x * w+ plus the signed b."""
  term = rules.Term(param_modifier=rules.map_params(
      lambda w: jnp.maximum(w, 0), lambda b: b))
  return rules.Rule((term,), rules.normalise(1e-9), rules.input_times_grad)


EPS = 0.25
CASES = {  # name -> (captum first, conv, dense; ours first, conv, dense)
    "epsilon": (lambda: captum_lrp.EpsilonRule(EPS),) * 3
               + (rules.epsilon(EPS),) * 3,
    "gamma": (lambda: captum_lrp.EpsilonRule(EPS),
              lambda: captum_lrp.GammaRule(0.25, set_bias_to_zero=True),
              lambda: captum_lrp.EpsilonRule(EPS), rules.epsilon(EPS),
              rules.gamma(0.25, zero_bias=True, stabilizer=1e-9),
              rules.epsilon(EPS)),
    "zplus": (lambda: captum_lrp.EpsilonRule(EPS),
              lambda: captum_lrp.Alpha1_Beta0_Rule(set_bias_to_zero=True),
              lambda: captum_lrp.EpsilonRule(EPS), rules.epsilon(EPS),
              rules.zplus(zero_bias=True, stabilizer=1e-9),
              rules.epsilon(EPS)),
    "gamma_with_bias": (lambda: captum_lrp.EpsilonRule(EPS),
                        lambda: captum_lrp.GammaRule(0.25),
                        lambda: captum_lrp.EpsilonRule(EPS),
                        rules.epsilon(EPS), _captum_gamma_with_bias(0.25),
                        rules.epsilon(EPS)),
    "alpha1_beta0_with_bias": (
        lambda: captum_lrp.EpsilonRule(EPS),
        lambda: captum_lrp.Alpha1_Beta0_Rule(), lambda: captum_lrp.EpsilonRule(
            EPS), rules.epsilon(EPS), _captum_alpha1_beta0_with_bias(),
        rules.epsilon(EPS)),
}


def _check(arch, case, size, batch):
  tm, model, variables = _models(arch)
  x = np.random.default_rng(1).normal(size=(batch, size, size, 3)).astype(
      np.float32)
  logits = np.asarray(model.apply(variables, jnp.asarray(x)))
  target = logits.argmax(1)
  assert np.all(logits.max(1) > 1.0)  # relevance that means something
  cf, cc, cd, of, oc, od = CASES[case]
  want = _captum(tm, x, target, cf, cc, cd)
  got = _ours(model, variables, x, target, of, oc, od)
  ties, flips = _tie_mask(tm, model, variables, x)
  # Near-ties are rare: a handful of windows out of ~1.5 million. Many flips
  # would mean the forward passes differ, not rounding. The area a flip
  # hides grows with depth (one flip at VGG-16's pool3 hides 4% of a
  # 224x224 input, at pool5 90%), so the count is what is bounded.
  assert flips <= 8, flips
  assert not ties.all()
  diff = np.abs(got - want)[~ties]
  assert np.max(diff) <= 1e-4 * np.max(np.abs(want))


def _span(module, lo: int, hi: int) -> tuple[int, int]:
  """Input rows (or columns) that outputs `lo..hi` of `module` depend on."""
  if not isinstance(module, (torch.nn.Conv2d, torch.nn.MaxPool2d)):
    return lo, hi  # ReLU and the like: elementwise
  k, s, p = (v if isinstance(v, int) else v[0] for v in
             (module.kernel_size, module.stride, module.padding))
  return s * lo - p, s * hi - p + k - 1


def _tie_mask(tm, model, variables, x) -> tuple[np.ndarray, int]:
  """(N, H, W) True at input pixels whose relevance passes through a
  max-pool window where our float32 forward pass and torch's pick different
  winners, and the number of such windows.

  Such windows hold a near-tie (inputs equal to the last float32 bits), and
  the last-bit differences between XLA's and torch's convolutions decide
  which input wins; both are then right, and the relevance of that window
  goes to a neighbouring pixel on one side. VGG-16 at 224 has ~1.5 million
  max-pool windows, so a handful of such flips is expected for some inputs
  (and seen: one at `features.4` and two at `features.9` for the epsilon case
  without YNNPACK fusions, with Captum's float32 result matching float64 and
  ours matching our own float64 result to 1e-11 elsewhere). The parity check
  leaves out exactly the pixels below those windows.
  """
  import flax.linen as nn  # pylint: disable=import-outside-toplevel
  ours = []

  def grab(next_fun, args, kwargs, context):
    if isinstance(context.module, MaxPool2d):
      ours.append(np.asarray(args[0]).transpose(0, 3, 1, 2))
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(grab):
    model.apply(variables, jnp.asarray(x))
  mods = list(tm.features)
  pools = [i for i, m in enumerate(mods) if isinstance(m, torch.nn.MaxPool2d)]
  theirs = []
  hooks = [mods[i].register_forward_pre_hook(
      lambda m, inp: theirs.append(inp[0].detach().numpy())) for i in pools]
  try:
    with torch.no_grad():
      tm(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))))
  finally:
    for h in hooks:
      h.remove()
  return _flip_mask(mods, pools, ours, theirs, x.shape[:3])


def _flip_mask(mods, pools, ours, theirs, shape) -> tuple[np.ndarray, int]:
  """`_tie_mask` from the NCHW inputs of the max-pool modules `mods[i]`,
  i in `pools`, as our forward pass (`ours`) and torch's (`theirs`) saw them."""
  assert len(ours) == len(theirs) == len(pools)
  mask, count = np.zeros(shape, bool), 0
  for i, a, b in zip(pools, ours, theirs):
    pool = mods[i]
    va, ia = torch.nn.functional.max_pool2d(
        torch.from_numpy(np.array(a)), pool.kernel_size, pool.stride,
        pool.padding, return_indices=True)
    vb, ib = torch.nn.functional.max_pool2d(
        torch.from_numpy(np.array(b)), pool.kernel_size, pool.stride,
        pool.padding, return_indices=True)
    flips = (ia != ib) & ((va > 0) | (vb > 0))  # all-zero windows carry none
    count += int(flips.sum())
    for n, _, r, c in np.argwhere(flips.numpy()):
      rows, cols = (r, r), (c, c)
      for m in reversed(mods[:i + 1]):
        rows, cols = _span(m, *rows), _span(m, *cols)
      mask[n, max(rows[0], 0):rows[1] + 1, max(cols[0], 0):cols[1] + 1] = True
  return mask, count


def test_tie_mask_covers_a_forced_flip():
  """The mask is empty when both forward passes agree, and covers exactly
  the input box under a window whose winner differs."""
  assert _span(torch.nn.Conv2d(3, 3, 11, stride=4, padding=2), 0, 0) == (
      -2, 8)
  assert _span(torch.nn.MaxPool2d(3, 2), 1, 2) == (2, 6)
  assert _span(torch.nn.ReLU(), 4, 5) == (4, 5)
  tm, model, variables = _models("alexnet")
  x = np.random.default_rng(3).normal(size=(1, 64, 64, 3)).astype(np.float32)
  mask, count = _tie_mask(tm, model, variables, x)  # both passes, plumbed
  assert mask.shape == x.shape[:3] and count <= 8
  # VGG's first block: conv 3x3 (pad 1), ReLU, conv, ReLU, max-pool 2x2.
  mods = [torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
          torch.nn.Conv2d(4, 4, 3, padding=1), torch.nn.ReLU(),
          torch.nn.MaxPool2d(2, 2)]
  a = np.random.default_rng(4).random((1, 4, 16, 16)).astype(np.float32)
  mask, count = _flip_mask(mods, [4], [a], [a.copy()], (1, 16, 16))
  assert count == 0 and not mask.any()
  b = a.copy()
  window = b[0, 2, 6:8, 10:12]  # pooled output (3, 5) of channel 2
  window[...] = [[0.5, 0.4], [0.3, 0.2]]
  b2 = b.copy()
  b2[0, 2, 7, 11] = 0.6  # another winner in that window only
  mask, count = _flip_mask(mods, [4], [b], [b2], (1, 16, 16))
  assert count == 1
  want = np.zeros((1, 16, 16), bool)
  want[0, 4:10, 8:14] = True  # rows 6..7, cols 10..11, then +-2 for 2 convs
  np.testing.assert_array_equal(mask, want)


@pytest.mark.parametrize("case", sorted(CASES))
def test_alexnet_224_matches_captum(case):
  _check("alexnet", case, 224, 2)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["epsilon", "gamma", "zplus"])
def test_vgg16_224_matches_captum(case):
  _check("vgg16", case, 224, 1)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["gamma", "zplus"])
def test_vgg16_64_matches_captum(case):
  _check("vgg16", case, 64, 2)


@pytest.mark.slow
def test_vgg16_small_epsilon_matches_captum_in_float64():
  tm, model, variables = _models("vgg16")
  x = np.random.default_rng(2).normal(size=(1, 32, 32, 3))
  tm64 = tm.double()
  try:
    with jax.enable_x64(True):
      v64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), variables)
      target = np.asarray(model.apply(v64, jnp.asarray(x)).argmax(1))
      eps = rules.epsilon(1e-6)
      want = _captum(tm64, x, target, *(lambda: captum_lrp.EpsilonRule(1e-6),)
                     * 3)
      got = _ours(model, v64, x, target, eps, eps, eps)
  finally:
    tm.float()
  assert got.dtype == np.float64
  assert np.max(np.abs(got - want)) <= 1e-9 * np.max(np.abs(want))
