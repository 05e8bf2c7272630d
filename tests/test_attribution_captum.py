"""Parity with Captum on the torch reference VGG-16 and AlexNet, same
weights, float64 on both sides: `GuidedBackprop`, `Deconvolution`,
`LayerGradCam` (upsampled with `LayerAttribution.interpolate`, bilinear),
`DeepLift` and `DeepLiftShap`, each to <= 1e-6 of the map's largest value.

Where the conventions differ: Captum's DeepLift back-propagates from the
input half of its [x, x0] batch only, so down to the first max-pooling the
baseline half carries no gradient, and its cross-max rule there drops the
term g (out - max(out, ref)) of windows where the baseline's pooled
activation is the larger: its attributions then miss completeness
(`test_deeplift_max_pool_convention`). Ours keep both terms (see
`sr_jax.attribution.deeplift`; checked against a NumPy reference in
tests/test_attribution_methods.py). The two agree on networks without
max-pooling, so DeepLift and DeepLiftShap are compared on "twins" of VGG-16
and AlexNet with every max-pooling replaced by average pooling of the same
window and stride (a torch copy, and the same network as a plain JAX
function f(params, x) of the same converted weights).
"""

import copy
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("captum")
# pylint: disable=wrong-import-position
from captum.attr import (DeepLift, DeepLiftShap, Deconvolution,
                         GuidedBackprop, LayerAttribution, LayerGradCam)

from sr_jax import attribution as A
from sr_jax.models.layers import AdaptiveAvgPool2d, flatten_nchw
from tests.test_lrp_captum import _models
# pylint: enable=wrong-import-position

pytestmark = pytest.mark.torch

SIZES = {"vgg16": 64, "alexnet": 96}
# Captum's layer (the ReLU module after a conv) and our tap, per arch: the
# last convolution's activation (our default) and an earlier one.
CAM_LAYERS = {"vgg16": ((29, None), (22, "features_21/relu")),
              "alexnet": ((11, None), (4, "features_3/relu"))}


@pytest.fixture(autouse=True)
def _float64():
  with jax.enable_x64(True):
    yield


@functools.lru_cache(maxsize=2)
def _setup(arch):
  """The He-scaled float64 torch model, ours and our variables as float64
  JAX arrays (converted once); call under x64."""
  tm, model, variables = _models(arch)
  return tm, model, jax.tree.map(jnp.asarray, variables)


@pytest.fixture(scope="module", params=[
    "alexnet", pytest.param("vgg16", marks=pytest.mark.slow)])
def net(request):
  """(arch, torch model, our model, variables, x, targets), float64."""
  arch = request.param
  with jax.enable_x64(True):
    tm, model, variables = _setup(arch)
    size = SIZES[arch]
    x = np.random.default_rng(1).normal(size=(2, size, size, 3))
    logits = np.asarray(model.apply(variables, jnp.asarray(x)))
    assert logits.dtype == np.float64 and np.all(logits.max(1) > 1.0)
    yield arch, tm, model, variables, x, logits.argmax(1)


def _nchw(x):
  return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def _nhwc(t):
  return t.detach().numpy().transpose(0, 2, 3, 1)


def _check(got, want, what):
  assert got.dtype == want.dtype == np.float64
  rel = np.max(np.abs(got - want)) / np.max(np.abs(want))
  print(f"FIGURE {what} {rel:.3e}")
  assert rel <= 1e-6, (what, rel)


@pytest.mark.parametrize("name, captum", [
    ("guided_backprop", GuidedBackprop), ("deconvnet", Deconvolution)])
def test_backprop_methods_match_captum(net, name, captum):
  arch, tm, model, variables, x, t = net
  want = _nhwc(captum(tm).attribute(_nchw(x).requires_grad_(),
                                    target=torch.tensor(t.tolist())))
  got = np.asarray(A.get_method(name)(model, variables, x, target=t))
  _check(got, want, f"{arch} {name}")


def test_grad_cam_matches_captum(net):
  arch, tm, model, variables, x, t = net
  for index, layer in CAM_LAYERS[arch]:
    cam = LayerGradCam(tm, tm.features[index]).attribute(
        _nchw(x), target=torch.tensor(t.tolist()), relu_attributions=True)
    want = _nhwc(LayerAttribution.interpolate(cam, x.shape[1:3],
                                              interpolate_mode="bilinear"))
    got = np.asarray(A.grad_cam(model, variables, x, target=t, layer=layer))
    assert want.max() > 0
    _check(got[..., :1], want, f"{arch} grad_cam {layer or 'default'}")


def _avg_pool_twin(tm):
  """`tm` with average pooling for max-pooling, in torch and as
  f(params, x) on our converted weights."""
  twin = copy.deepcopy(tm)
  for i, m in enumerate(twin.features):
    if isinstance(m, torch.nn.MaxPool2d):
      twin.features[i] = torch.nn.AvgPool2d(m.kernel_size, m.stride)
  features, classifier = list(enumerate(tm.features)), list(
      enumerate(tm.classifier))
  out_size = tm.avgpool.output_size

  def f(p, x):
    for i, m in features:
      if isinstance(m, torch.nn.Conv2d):
        q = p[f"features_{i}"]
        x = jax.lax.conv_general_dilated(
            x, q["kernel"], m.stride, [(m.padding[0],) * 2,
                                       (m.padding[1],) * 2],
            dimension_numbers=("NHWC", "HWIO", "NHWC")) + q["bias"]
      elif isinstance(m, torch.nn.ReLU):
        x = jax.nn.relu(x)
      else:
        k, s = m.kernel_size, m.stride
        x = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, k, k, 1),
                                  (1, s, s, 1), "VALID") / (k * k)
    x = flatten_nchw(AdaptiveAvgPool2d(tuple(out_size)).apply({}, x))
    for i, m in classifier:
      if isinstance(m, torch.nn.Linear):
        x = x @ p[f"classifier_{i}"]["kernel"] + p[f"classifier_{i}"]["bias"]
      elif isinstance(m, torch.nn.ReLU):
        x = jax.nn.relu(x)
    return x
  return twin, f


@functools.lru_cache(maxsize=2)
def _twin(arch):
  return _avg_pool_twin(_setup(arch)[0])


def test_deeplift_and_deepshap_match_captum_without_max_pool(net):
  arch, _, _, variables, x, _ = net
  twin, f = _twin(arch)
  p = variables["params"]
  np.testing.assert_allclose(
      np.asarray(f(p, jnp.asarray(x))),
      twin(_nchw(x)).detach().numpy(), rtol=1e-10, atol=1e-10)
  t = np.asarray(f(p, jnp.asarray(x))).argmax(1)
  tt = torch.tensor(t.tolist())
  r = np.random.default_rng(2)
  baseline = 0.5 * r.normal(size=x.shape)
  for x0 in (None, baseline):
    want = _nhwc(DeepLift(twin).attribute(
        _nchw(x).requires_grad_(), target=tt,
        baselines=None if x0 is None else _nchw(x0)))
    got = np.asarray(A.deeplift(f, p, x, target=t, baseline=x0))
    _check(got, want, f"{arch} deeplift {'zeros' if x0 is None else 'random'}")
  background = r.normal(size=(3,) + x.shape[1:])
  want = _nhwc(DeepLiftShap(twin).attribute(
      _nchw(x).requires_grad_(), target=tt, baselines=_nchw(background)))
  got = np.asarray(A.deepshap(f, p, x, target=t, background=background))
  _check(got, want, f"{arch} deepshap")


def test_deeplift_max_pool_convention():
  """On AlexNet with its max-pools, ours sums to f(x) - f(0) and Captum's
  does not (the dropped term of its first max-pooling, see the module
  docstring)."""
  tm, model, variables = _setup("alexnet")
  x = np.random.default_rng(1).normal(size=(2, 96, 96, 3))
  logits = np.asarray(model.apply(variables, jnp.asarray(x)))
  t = logits.argmax(1)
  gain = (logits - np.asarray(model.apply(variables, jnp.zeros_like(
      jnp.asarray(x)))))[[0, 1], t]
  ours = np.asarray(A.deeplift(model, variables, x, target=t))
  theirs = _nhwc(DeepLift(tm).attribute(_nchw(x).requires_grad_(),
                                        target=torch.tensor(t.tolist())))
  np.testing.assert_allclose(ours.reshape(2, -1).sum(1), gain, rtol=1e-10)
  assert np.all(np.abs(theirs.reshape(2, -1).sum(1) - gain) > 1e-4 * np.abs(
      gain))


def test_alexnet_224_guided_backprop_matches_captum():
  tm, model, variables = _setup("alexnet")
  x = np.random.default_rng(3).normal(size=(1, 224, 224, 3))
  t = np.asarray(model.apply(variables, jnp.asarray(x))).argmax(1)
  want = _nhwc(GuidedBackprop(tm).attribute(
      _nchw(x).requires_grad_(), target=torch.tensor(t.tolist())))
  _check(np.asarray(A.guided_backprop(model, variables, x, target=t)), want,
         "alexnet 224 guided_backprop")
