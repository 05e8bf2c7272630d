"""Parity with Captum's `LRP` on the torch reference VGG-16 and AlexNet, in
float64 on both sides (torch `.double()`, JAX under `jax_enable_x64`).

Both sides get the same random weights (torch's init scaled by sqrt(6), He's
variance, so that the logits of a 16-layer net do not vanish) and matching
rules. In float64 the two frameworks' forward passes agree to ~1e-15, so
max-pooling picks the same winners on both sides and the relevance agrees to
rounding everywhere; the checks are max|dR| <= 1e-6 max|R| over all pixels.
(In float32, near-ties in max-pool windows picked different winners in the
two frameworks and moved relevance by up to 1e-2 of its maximum.)

What Captum computes (captum/attr/_utils/lrp_rules.py, _core/lrp.py), and
where its conventions differ from ours:
  * EpsilonRule(eps): z + eps*sign(z), sign(0) = +1, bias in z: our epsilon.
  * GammaRule(g): weights w + g*w+ for inputs of any sign, the rule of
    Montavon et al. 2019: our `gamma(g, generalised=False)`. Our default is
    the generalised gamma (Andeol et al. 2021), which equals it on
    non-negative input wherever outputs z_j < 0 carry no relevance, as when
    a ReLU follows: the "gamma" case checks that (every conv but the first).
    On the signed input of the first layer the two differ, so "gamma_first"
    compares Captum's GammaRule there with `generalised=False`.
    With the bias kept (`set_bias_to_zero=False`) Captum leaves it
    unmodified, where we use b + g*b+; a two-line custom rule matches it.
  * Alpha1_Beta0_Rule: x * w+ without splitting the input's sign: our
    zplus for non-negative input (every layer but the first). With the bias
    kept Captum puts the signed bias in the denominator; again a custom rule
    matches it.
  * Captum has no z^B rule (our `zbox`) and no first-layer rules of its own:
    a layer gets the rule it is given. `zbox` is checked against the float64
    matrix reference only (tests/test_lrp_rules.py).
  * Max-pooling and adaptive average pooling get EpsilonRule(1e-9); we give
    them the same here (our composites keep max-pooling's plain gradient,
    which differs from it by a relative 1e-9 / activation).
  * ReLU passes relevance through; relevance starts at the target's logit.
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
def _float64():
  """JAX in float64 for each test (`jax_enable_x64`), restored after it."""
  with jax.enable_x64(True):
    yield


@functools.lru_cache(maxsize=1)
def _models(arch):
  """The float64 torch reference (He-scaled) and our model with the same
  weights, float64 NumPy (`zbox` and the rules follow their dtype)."""
  torch.manual_seed(0)
  tm = torch_models.build(arch, seed=0)
  with torch.no_grad():
    for m in tm.modules():
      if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
        m.weight.mul_(6 ** 0.5)
  tm.double()  # drawn and scaled in float32: the same numbers
  state = {k: v.detach().numpy().copy() for k, v in tm.state_dict().items()}
  variables = weights.convert_state_dict(state, arch)  # float32 holds them
  return tm, get_arch(arch).module(), jax.tree.map(
      lambda a: np.asarray(a, np.float64), variables)


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
  return rules.Rule((term,), rules.normalize(1e-9), rules.input_times_grad)


def _captum_alpha1_beta0_with_bias():
  """Captum's Alpha1_Beta0_Rule keeping the bias: x * w+ plus the signed b."""
  term = rules.Term(param_modifier=rules.map_params(
      lambda w: jnp.maximum(w, 0), lambda b: b))
  return rules.Rule((term,), rules.normalize(1e-9), rules.input_times_grad)


EPS = 0.25
CASES = {  # name -> (captum first, conv, dense; ours first, conv, dense)
    "epsilon": (lambda: captum_lrp.EpsilonRule(EPS),) * 3
               + (rules.epsilon(EPS),) * 3,
    "gamma": (lambda: captum_lrp.EpsilonRule(EPS),
              lambda: captum_lrp.GammaRule(0.25, set_bias_to_zero=True),
              lambda: captum_lrp.EpsilonRule(EPS), rules.epsilon(EPS),
              rules.gamma(0.25, zero_bias=True, stabilizer=1e-9),
              rules.epsilon(EPS)),
    "gamma_first": (lambda: captum_lrp.GammaRule(0.25, set_bias_to_zero=True),
                    lambda: captum_lrp.GammaRule(0.25, set_bias_to_zero=True),
                    lambda: captum_lrp.EpsilonRule(EPS),
                    rules.gamma(0.25, generalised=False, zero_bias=True,
                                stabilizer=1e-9),
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
  x = np.random.default_rng(1).normal(size=(batch, size, size, 3))
  logits = np.asarray(model.apply(variables, jnp.asarray(x)))
  target = logits.argmax(1)
  assert np.all(logits.max(1) > 1.0)  # relevance that means something
  cf, cc, cd, of, oc, od = CASES[case]
  want = _captum(tm, x, target, cf, cc, cd)
  got = _ours(model, variables, x, target, of, oc, od)
  assert want.dtype == got.dtype == np.float64
  rel = np.max(np.abs(got - want)) / np.max(np.abs(want))
  assert rel <= 1e-6, rel


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
def test_vgg16_small_epsilon_matches_captum():
  tm, model, variables = _models("vgg16")
  x = np.random.default_rng(2).normal(size=(1, 32, 32, 3))
  target = np.asarray(model.apply(variables, jnp.asarray(x)).argmax(1))
  eps = rules.epsilon(1e-6)
  want = _captum(tm, x, target, *(lambda: captum_lrp.EpsilonRule(1e-6),) * 3)
  got = _ours(model, variables, x, target, eps, eps, eps)
  assert want.dtype == got.dtype == np.float64
  assert np.max(np.abs(got - want)) <= 1e-9 * np.max(np.abs(want))
