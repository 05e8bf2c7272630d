"""Guided backprop, deconvnet, Grad-CAM, the NormGrad family, multi-layer
maps, meta-saliency, DeepLIFT and Deep SHAP: float64 NumPy references
written from the formulas, analytic properties (Grad-CAM = CAM, DeepLIFT's
completeness, guided backprop = gradient without ReLUs, the resampling fix),
the wrappers, every model kind, and the error messages. Captum parity is in
tests/test_attribution_captum.py."""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sr_jax
from sr_jax import attribution as A
from tests import test_core

DN = ("NHWC", "HWIO", "NHWC")
NEW = ("deconvnet", "guided_backprop", "grad_cam", "normgrad",
       "normgrad_selective", "normgrad_conv", "linear_approx", "multi_layer",
       "deeplift", "deepshap")


def _conv(x, k, stride=1, pad=0, dil=1):
  return jax.lax.conv_general_dilated(x, k, (stride,) * 2, ((pad, pad),) * 2,
                                      rhs_dilation=(dil,) * 2,
                                      dimension_numbers=DN)


def _params(seed, **shapes):
  r = np.random.default_rng(seed)
  return {k: jnp.asarray(r.normal(size=s) * (0.1 if k.startswith("b") else
                                             0.5)) for k, s in shapes.items()}


# ---- float64 NumPy references, one HWC example at a time -------------------

def _patches(x, kh, stride, pad, dil):
  """(oh, ow, kh*kh, C): the input patch each output location sees."""
  xp = np.pad(x, ((pad, pad), (pad, pad), (0, 0)))
  o = (x.shape[0] + 2 * pad - dil * (kh - 1) - 1) // stride + 1
  return np.array([[[xp[i * stride + a * dil, j * stride + b * dil]
                     for a in range(kh) for b in range(kh)]
                    for j in range(o)] for i in range(o)])


def _conv_np(x, k, stride, pad, dil):
  p = _patches(x, k.shape[0], stride, pad, dil)
  return np.einsum("ijpc,pco->ijo", p, k.reshape(-1, *k.shape[2:]))


def _conv_adjoint_np(g, k, in_shape, stride, pad, dil):
  """The input cotangent of `_conv_np` for output cotangent g."""
  kh = k.shape[0]
  gx = np.zeros((in_shape[0] + 2 * pad, in_shape[1] + 2 * pad, in_shape[2]))
  for i in range(g.shape[0]):
    for j in range(g.shape[1]):
      for a in range(kh):
        for b in range(kh):
          gx[i * stride + a * dil, j * stride + b * dil] += k[a, b] @ g[i, j]
  return gx[pad:pad + in_shape[0], pad:pad + in_shape[1]]


def _bilinear_np(m, size):
  """(h, w) -> (size, size), half-pixel centres, edges clamped (torch's
  align_corners=False)."""
  def weights(n_in):
    src = np.clip((np.arange(size) + 0.5) * n_in / size - 0.5, 0, n_in - 1)
    lo = np.floor(src).astype(int)
    w = np.zeros((size, n_in))
    np.add.at(w, (np.arange(size), lo), 1 - (src - lo))
    np.add.at(w, (np.arange(size), np.minimum(lo + 1, n_in - 1)), src - lo)
    return w
  return weights(m.shape[0]) @ m @ weights(m.shape[1]).T


def _norm(v):
  return np.sqrt((v * v).sum(-1))


# ---- NormGrad, its variants, the linear approximation and Grad-CAM ---------

def _strided(p, x):
  """conv (stride 2, padding 1), relu, conv (dilation 2, padding 2), relu,
  dense: the layers the references unfold."""
  a1 = jax.nn.relu(_conv(x, p["k1"], 2, 1) + p["b1"])
  a2 = jax.nn.relu(_conv(a1, p["k2"], 1, 2, 2) + p["b2"])
  return a2.reshape(x.shape[0], -1) @ p["w"] + p["bw"]


def _strided_reference(p, x, t):
  """Every tapped value and its gradient, and the unfolded inputs."""
  p = {k: np.asarray(v, np.float64) for k, v in p.items()}
  z1 = _conv_np(x, p["k1"], 2, 1, 1) + p["b1"]
  a1 = np.maximum(z1, 0)
  z2 = _conv_np(a1, p["k2"], 1, 2, 2) + p["b2"]
  a2 = np.maximum(z2, 0)
  g_a2 = p["w"][:, t].reshape(a2.shape)
  g_z2 = g_a2 * (z2 > 0)
  g_a1 = _conv_adjoint_np(g_z2, p["k2"], a1.shape, 1, 2, 2)
  g_z1 = g_a1 * (z1 > 0)
  return {"k1": (z1, g_z1, _patches(x, 3, 2, 1, 1)),
          "k1/relu": (a1, g_a1), "k2": (z2, g_z2, _patches(a1, 3, 1, 2, 2)),
          "k2/relu": (a2, g_a2)}


FORMULAS = {  # method -> per-location map from (a, g[, patches])
    "normgrad": lambda a, g, *_: _norm(a) * _norm(g),
    "normgrad_selective": lambda a, g, *_: _norm(np.maximum(a * g, 0)),
    "linear_approx": lambda a, g, *_: (a * g).sum(-1),
    "grad_cam": lambda a, g, *_: np.maximum((a * g.mean((0, 1))).sum(-1), 0),
    "normgrad_conv": lambda a, g, u: _norm(g) * _norm(u.reshape(
        *u.shape[:2], -1)),
}
CASES = [("normgrad", "k1/relu"), ("normgrad", "k2"),
         ("normgrad_selective", "k1/relu"), ("linear_approx", "k1"),
         ("linear_approx", "k2/relu"), ("grad_cam", "k1/relu"),
         ("normgrad_conv", "k1"), ("normgrad_conv", "k2")]


@pytest.mark.parametrize("method, layer", CASES)
def test_layer_methods_match_numpy_reference(x64, method, layer):
  p = _params(0, k1=(3, 3, 3, 4), b1=(4,), k2=(3, 3, 4, 5), b2=(5,),
              w=(125, 3), bw=(3,))
  x = np.random.default_rng(1).normal(size=(2, 9, 9, 3))
  t = [0, 2]
  got = np.asarray(A.get_method(method)(_strided, p, x, target=t,
                                        layer=layer))
  for i in range(2):
    ref = _strided_reference(p, x[i], t[i])[layer]
    want = _bilinear_np(FORMULAS[method](*ref), 9)
    assert np.max(np.abs(want)) > 0
    for c in range(3):
      np.testing.assert_allclose(got[i, ..., c], want, rtol=1e-10,
                                 atol=1e-12 * np.abs(want).max())


def test_grad_cam_is_cam_up_to_a_positive_scale(x64):
  """conv, relu, conv, relu, global average pooling, dense (Zhou et al.'s
  CAM architecture): Grad-CAM = max(CAM, 0) / (h w)."""
  p = _params(2, k1=(3, 3, 3, 6), b1=(6,), k2=(3, 3, 6, 8), b2=(8,),
              w=(8, 4), bw=(4,))

  def gap_net(p, x):
    a = jax.nn.relu(_conv(x, p["k1"], 1, 1) + p["b1"])
    a = jax.nn.relu(_conv(a, p["k2"], 1, 1) + p["b2"])
    return a.mean((1, 2)) @ p["w"] + p["bw"]

  x = np.random.default_rng(3).normal(size=(3, 7, 7, 3))
  t = [0, 1, 3]
  got = np.asarray(A.grad_cam(gap_net, p, x, target=t))[..., 0]
  q = {k: np.asarray(v) for k, v in p.items()}
  for i in range(3):
    a = np.maximum(_conv_np(x[i], q["k1"], 1, 1, 1) + q["b1"], 0)
    a = np.maximum(_conv_np(a, q["k2"], 1, 1, 1) + q["b2"], 0)
    cam = np.maximum(a @ q["w"][:, t[i]], 0)
    assert cam.max() > 0 and np.any(cam == 0)
    scale = (got[i] * cam).sum() / (cam * cam).sum()
    assert scale > 0
    np.testing.assert_allclose(got[i], scale * cam, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(scale, 1 / 49, rtol=1e-10)


# ---- guided backprop and deconvnet ------------------------------------------

def test_without_relu_guided_backprop_and_deconvnet_are_the_gradient(x64):
  p = _params(4, k1=(3, 3, 3, 4), k2=(3, 3, 4, 5), w=(5, 3))

  def smooth_net(p, x):
    a = jnp.tanh(_conv(x, p["k1"], 1, 1))
    a = jax.lax.reduce_window(a, -jnp.inf, jax.lax.max, (1, 2, 2, 1),
                              (1, 2, 2, 1), "VALID")
    a = jax.nn.sigmoid(_conv(a, p["k2"], 2, 1))
    return a.mean((1, 2)) @ p["w"]

  x = np.random.default_rng(5).normal(size=(2, 8, 8, 3))
  g = np.asarray(A.gradient(smooth_net, p, x, target=[1, 2]))
  for name in ("guided_backprop", "deconvnet"):
    for resample in (False,):
      np.testing.assert_allclose(
          A.get_method(name)(smooth_net, p, x, target=[1, 2],
                             resample_strided=resample), g, rtol=1e-12,
          atol=1e-15)


def test_one_relu_network_matches_the_rules_by_hand(x64):
  """f = relu(x W1 + b1) W2: R = W2[:, t] at the ReLU; deconvnet passes
  max(R, 0), guided backprop R 1[z > 0] 1[R > 0]; then W1."""
  p = _params(6, w1=(12, 7), b1=(7,), w2=(7, 3))

  def net(p, x):
    return jax.nn.relu(x.reshape(x.shape[0], -1) @ p["w1"] + p["b1"]) @ p[
        "w2"]

  x = np.random.default_rng(7).normal(size=(2, 2, 2, 3))
  q = {k: np.asarray(v) for k, v in p.items()}
  for i, t in enumerate((0, 2)):
    z = x[i].reshape(-1) @ q["w1"] + q["b1"]
    r = q["w2"][:, t]
    assert np.any((r > 0) & (z <= 0)) and np.any((r < 0) & (z > 0))
    deconv = q["w1"] @ np.maximum(r, 0)
    guided = q["w1"] @ (r * (z > 0) * (r > 0))
    np.testing.assert_allclose(np.asarray(A.deconvnet(
        net, p, x[i:i + 1], target=t)).reshape(-1), deconv, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(A.guided_backprop(
        net, p, x[i:i + 1], target=t)).reshape(-1), guided, rtol=1e-12)


def test_resampling_by_hand_on_a_1x1_strided_conv(x64):
  """A 1x1 conv of stride 2 on 4x4: zero insertion puts w g at the even
  pixels; the fix spreads w g / 4 over each 2x2 block."""
  def net(p, x):
    z = _conv(x, p["k"], 2, 0)
    return z.reshape(1, -1) @ p["w"]

  p = {"k": jnp.full((1, 1, 1, 1), 3.0), "w": jnp.asarray(
      np.arange(1.0, 5.0).reshape(4, 1))}
  x = jnp.ones((1, 4, 4, 1))
  g = np.arange(1.0, 5.0).reshape(2, 2)
  plain = np.zeros((4, 4))
  plain[::2, ::2] = 3 * g
  fixed = np.kron(3 * g / 4, np.ones((2, 2)))
  for name in ("guided_backprop", "deconvnet"):
    fn = A.get_method(name)
    np.testing.assert_allclose(np.asarray(fn(net, p, x, target=0))[0, ..., 0],
                               plain)
    np.testing.assert_allclose(np.asarray(fn(
        net, p, x, target=0, resample_strided=True))[0, ..., 0], fixed)


def _conv_net(p, x, stride):
  a = jax.nn.relu(_conv(x, p["k1"], stride, 1) + p["b1"])
  a = jax.nn.relu(_conv(a, p["k2"], stride, 1) + p["b2"])
  return a.mean((1, 2)) @ p["w"]


_two_strided = functools.partial(_conv_net, stride=2)
_stride_one = functools.partial(_conv_net, stride=1)


def _stride_power(m, period):
  """Share of each map's non-DC spectral power at the frequencies of the
  lattice of `size / period`: where zero insertion puts the checkerboard."""
  spec = np.abs(np.fft.fft2(m.sum(-1), axes=(1, 2))) ** 2
  lattice = np.arange(0, m.shape[1], m.shape[1] // period)
  dc = spec[:, 0, 0]
  return (spec[:, lattice][:, :, lattice].sum((1, 2)) - dc) / (
      spec.sum((1, 2)) - dc)


@pytest.mark.parametrize("name", ["guided_backprop", "deconvnet"])
def test_resampling_fix_removes_the_checkerboard(name):
  """Two convolutions of stride 2 (the second on its own 16x16 input), so
  a checkerboard of period 4: its spectral power falls by more than 10x;
  with stride 1 the option changes nothing."""
  fn = A.get_method(name)
  p = jax.tree.map(lambda a: a.astype(jnp.float32), _params(
      8, k1=(3, 3, 3, 8), b1=(8,), k2=(3, 3, 8, 8), b2=(8,), w=(8, 4)))
  x = jnp.asarray(np.random.default_rng(9).normal(size=(4, 32, 32, 3)),
                  jnp.float32)
  plain = _stride_power(np.asarray(fn(_two_strided, p, x, target=1)), 4)
  fixed = _stride_power(np.asarray(fn(_two_strided, p, x, target=1,
                                      resample_strided=True)), 4)
  assert np.all(plain > 0.1) and np.all(fixed < 0.1 * plain), (plain, fixed)
  np.testing.assert_array_equal(
      fn(_stride_one, p, x, target=2), fn(_stride_one, p, x, target=2,
                                          resample_strided=True))


# ---- DeepLIFT and Deep SHAP -------------------------------------------------

def _pool_net(p, x):
  """conv, relu, overlapping 3x3/2 max-pool, dense, tanh, dense."""
  a = jax.nn.relu(_conv(x, p["k"], 1, 1) + p["b"])
  a = jax.lax.reduce_window(a, -jnp.inf, jax.lax.max, (1, 3, 3, 1),
                            (1, 2, 2, 1), "VALID")
  h = jnp.tanh(a.reshape(x.shape[0], -1) @ p["w1"] + p["c1"])
  return h @ p["w2"] + p["c2"]


POOL_NET = dict(k=(3, 3, 3, 4), b=(4,), w1=(16, 6), c1=(6,), w2=(6, 3),
                c2=(3,))


def _deeplift_np(p, x, x0, t, eps=1e-10):
  """DeepLIFT-Rescale of `_pool_net` by hand: Rescale at relu and tanh, the
  cross-max rule at the max-pool (the input's argmax gets g (top - ref),
  the baseline's g (out - top)); returns the attribution and whether the
  baseline's term mattered."""
  p = {k: np.asarray(v) for k, v in p.items()}

  def forward(v):
    z = _conv_np(v, p["k"], 1, 1, 1) + p["b"]
    a = np.maximum(z, 0)
    win = np.stack([a[2 * i:2 * i + 3, 2 * j:2 * j + 3].reshape(9, -1)
                    for i in range(2) for j in range(2)])  # (4, 9, C)
    pooled = win.max(1)
    h = pooled.reshape(-1) @ p["w1"] + p["c1"]
    return dict(z=z, a=a, arg=win.argmax(1), pooled=pooled, h=h,
                y=np.tanh(h))

  f, f0 = forward(x), forward(x0)

  def rescale(num, den, fallback):
    small = np.abs(den) < eps
    return np.where(small, fallback, num / np.where(small, 1, den))

  m_y = p["w2"][:, t]
  m_h = m_y * rescale(f["y"] - f0["y"], f["h"] - f0["h"], 1 - f["y"] ** 2)
  m_pool = (p["w1"] @ m_h).reshape(4, -1)
  top = np.maximum(f["pooled"], f0["pooled"])
  num, plain = np.zeros_like(f["a"]), np.zeros_like(f["a"])
  for w in range(4):
    i, j = divmod(w, 2)
    for c in range(m_pool.shape[1]):
      for arg, share in ((f["arg"][w, c], top[w, c] - f0["pooled"][w, c]),
                         (f0["arg"][w, c], f["pooled"][w, c] - top[w, c])):
        num[2 * i + arg // 3, 2 * j + arg % 3, c] += m_pool[w, c] * share
      plain[2 * i + f["arg"][w, c] // 3, 2 * j + f["arg"][w, c] % 3, c] += (
          m_pool[w, c])
  m_a = rescale(num, f["a"] - f0["a"], plain)
  m_z = m_a * rescale(f["a"] - f0["a"], f["z"] - f0["z"], f["z"] > 0)
  m_x = _conv_adjoint_np(m_z, p["k"], x.shape, 1, 1, 1)
  return m_x * (x - x0), np.any(f["pooled"] < f0["pooled"])


def test_deeplift_matches_numpy_reference_and_is_complete(x64):
  p = _params(10, **POOL_NET)
  r = np.random.default_rng(11)
  x, x0 = r.normal(size=(2, 6, 6, 3)), r.normal(size=(2, 6, 6, 3))
  t = [1, 2]
  got = np.asarray(A.deeplift(_pool_net, p, x, target=t, baseline=x0))
  gain = np.asarray(_pool_net(p, x) - _pool_net(p, x0))[[0, 1], t]
  for i in range(2):
    want, crossed = _deeplift_np(p, x[i], x0[i], t[i])
    assert crossed  # the baseline's term of the cross-max rule is used
    np.testing.assert_allclose(got[i], want, rtol=1e-10,
                               atol=1e-12 * np.abs(want).max())
    np.testing.assert_allclose(got[i].sum(), gain[i], rtol=1e-12)


@pytest.mark.parametrize("net", ["pool_net", "vgg_tiny"])
def test_deeplift_completeness_in_float32(net):
  """Sums to f(x) - f(x0) to 1e-5, through max-pooling (reduce_window, and
  the models' custom-VJP MaxPool2d), tanh and ReLU."""
  if net == "vgg_tiny":
    model, variables = sr_jax.load_model("vgg_tiny")
    shape = (3, 32, 32, 3)
  else:
    model, variables = _pool_net, jax.tree.map(
        lambda a: a.astype(jnp.float32), _params(12, **POOL_NET))
    shape = (3, 6, 6, 3)
  r = np.random.default_rng(13)
  x = jnp.asarray(r.normal(size=shape), jnp.float32)
  x0 = jnp.asarray(0.5 * r.normal(size=shape), jnp.float32)
  fn, params = sr_jax.core.as_function(model, variables)
  t = np.asarray(fn(params, x)).argmax(1)
  gain = np.asarray(fn(params, x) - fn(params, x0))[np.arange(3), t]
  got = np.asarray(A.deeplift(model, variables, x, baseline=x0)).reshape(
      3, -1).sum(1)
  assert np.all(np.abs(gain) > 0.1)
  np.testing.assert_allclose(got, gain, rtol=1e-5)


def test_deepshap_averages_deeplift_and_sums_to_expected_value(x64):
  p = _params(14, **POOL_NET)
  r = np.random.default_rng(15)
  x, bg = r.normal(size=(2, 6, 6, 3)), r.normal(size=(4, 6, 6, 3))
  shap = np.asarray(A.deepshap(_pool_net, p, x, target=0, background=bg))
  mean = np.mean([np.asarray(A.deeplift(_pool_net, p, x, target=0,
                                        baseline=b)) for b in bg], 0)
  np.testing.assert_allclose(shap, mean, rtol=1e-12, atol=1e-15)
  base = np.asarray(A.expected_value(_pool_net, p, bg))
  np.testing.assert_allclose(
      base, np.asarray(_pool_net(p, bg)).mean(0), rtol=1e-12)
  np.testing.assert_allclose(shap.reshape(2, -1).sum(1), np.asarray(
      _pool_net(p, x))[:, 0] - base[0], rtol=1e-10)
  np.testing.assert_array_equal(  # default: one black image
      A.deepshap(_pool_net, p, x, target=0), A.deeplift(_pool_net, p, x,
                                                        target=0))
  # Under the caller's jit the baselines run in one loop body (compiled
  # once, whatever the background's size), with the same result.
  jitted = jax.jit(lambda x: A.deepshap(_pool_net, p, x, target=0,
                                        background=bg))
  np.testing.assert_allclose(np.asarray(jitted(jnp.asarray(x))), shap,
                             rtol=1e-12, atol=1e-15)
  def program_size(n):
    return len(str(jax.make_jaxpr(lambda x: A.deepshap(
        _pool_net, p, x, target=0, background=np.resize(bg, (n, 6, 6, 3))))(
            jnp.asarray(x))))
  assert program_size(8) < 1.1 * program_size(2)


# ---- multi-layer maps -------------------------------------------------------

def _minmax_np(m):
  m = np.asarray(m, np.float64)
  return (m - m.min()) / (m.max() - m.min())


@pytest.mark.parametrize("mode", ["product", "sum"])
def test_combine_layers_matches_per_layer_maps(x64, mode):
  p = _params(16, k1=(3, 3, 3, 4), b1=(4,), k2=(3, 3, 4, 5), b2=(5,),
              w=(125, 3), bw=(3,))
  x = np.random.default_rng(17).normal(size=(2, 9, 9, 3))
  layers = ["k1/relu", "k2", "k2/relu"]
  per = [np.asarray(A.normgrad(_strided, p, x, target=1, layer=l))
         for l in layers]
  w = np.array([1.0, 2.0, 5.0]) / 8
  got = np.asarray(A.combine_layers("normgrad", layers, mode=mode,
                                    weights=(1, 2, 5))(_strided, p, x,
                                                       target=1))
  for i in range(2):
    scaled = [_minmax_np(m[i]) for m in per]
    want = (sum(wl * m for wl, m in zip(w, scaled)) if mode == "sum" else
            np.prod([m ** wl for wl, m in zip(w, scaled)], 0))
    np.testing.assert_allclose(got[i], want, rtol=1e-10, atol=1e-14)
  # Registered for the pipeline; `layers=None` means every convolution.
  np.testing.assert_allclose(
      A.get_method("multi_layer")(_strided, p, x, target=1, mode=mode),
      A.combine_layers("normgrad", ["k1/relu", "k2/relu"], mode=mode)(
          _strided, p, x, target=1), rtol=1e-12)
  # Any method with a `layer=` option, one pass per layer.
  np.testing.assert_allclose(
      A.combine_layers(A.meta("normgrad", learning_rate=0.0), layers,
                       mode=mode, weights=(1, 2, 5))(_strided, p, x,
                                                     target=1),
      got, rtol=1e-9, atol=1e-12)


# ---- meta-saliency ----------------------------------------------------------

def _cross_entropy_step(p, x, t, lr):
  """Each example's own parameters after one SGD step, independently."""
  def loss(q, xi):
    return -jax.nn.log_softmax(_strided(q, xi[None]))[0, t]
  return [jax.tree.map(lambda a, g: a - lr * g, p, jax.grad(loss)(p, xi))
          for xi in x]


@pytest.mark.parametrize("method", ["gradient", "grad_cam", "deeplift"])
def test_meta_is_the_method_after_one_sgd_step(x64, method):
  p = _params(18, k1=(3, 3, 3, 4), b1=(4,), k2=(3, 3, 4, 5), b2=(5,),
              w=(125, 3), bw=(3,))
  before = jax.tree.map(np.array, p)
  x = np.random.default_rng(19).normal(size=(2, 9, 9, 3))
  fn = A.get_method(method)
  got = np.asarray(A.meta(method, learning_rate=0.5)(_strided, p, x,
                                                     target=2))
  for i, q in enumerate(_cross_entropy_step(p, x, 2, 0.5)):
    np.testing.assert_allclose(got[i], fn(_strided, q, x[i:i + 1],
                                          target=2)[0], rtol=1e-9,
                               atol=1e-12 * np.abs(got).max())
  up = _cross_entropy_step(p, x, 2, -0.5)[1]
  np.testing.assert_allclose(
      A.meta(method, learning_rate=0.5, negate=True)(_strided, p, x[1:],
                                                     target=2),
      fn(_strided, up, x[1:], target=2), rtol=1e-9, atol=1e-12)
  assert not np.allclose(got, fn(_strided, p, x, target=2))
  np.testing.assert_allclose(A.meta(method, learning_rate=0.0)(
      _strided, p, x, target=2), fn(_strided, p, x, target=2), rtol=1e-12,
                             atol=1e-15)
  jax.tree.map(np.testing.assert_array_equal, p, before)


def test_meta_leaves_every_kind_of_model_unchanged(x64):
  x = test_core._input()
  kinds = test_core._kinds(test_core._weights())
  maps = {}
  for kind, (model, variables) in kinds.items():
    before = jax.tree.map(np.array, sr_jax.core.as_function(model,
                                                            variables)[1])
    maps[kind] = np.asarray(A.meta("guided_backprop", learning_rate=0.1)(
        model, variables, x, target=[1, 3]))
    after = sr_jax.core.as_function(model, variables)[1]
    jax.tree.map(np.testing.assert_array_equal, after, before)
  for kind, m in maps.items():
    np.testing.assert_allclose(m, maps["function"], rtol=1e-9, atol=1e-12,
                               err_msg=kind)


# ---- every model kind, the wrappers, the pipeline ---------------------------

KIND_OPTIONS = {"guided_backprop": {"resample_strided": True},
                "deconvnet": {"resample_strided": True},
                "deepshap": {"background": np.random.default_rng(20).normal(
                    size=(2, test_core.H, test_core.W, 3))}}


@pytest.mark.parametrize("name", NEW)
def test_every_kind_gives_the_same_map(x64, name):
  """linen, NNX, equinox (NCHW inside, a strided conv with relayouts) and a
  function with the same weights; the default layers included."""
  x = test_core._input()
  fn = A.get_method(name)
  maps = {kind: np.asarray(fn(m, v, x, target=[1, 3],
                              **KIND_OPTIONS.get(name, {})))
          for kind, (m, v) in test_core._kinds(test_core._weights()).items()}
  assert np.abs(maps["function"]).max() > 0
  for kind, m in maps.items():
    np.testing.assert_allclose(m, maps["function"], rtol=1e-9,
                               atol=1e-12 * np.abs(m).max(), err_msg=kind)


@pytest.mark.parametrize("name", NEW)
def test_smooth_and_meta_wrap_every_method(name):
  from tests.test_methods_contract import model, OPTIONS  # a small CNN
  p = _params(21, k1=(3, 3, 3, 6), b1=(6,), k2=(3, 3, 6, 8), b2=(8,),
              w=(8, 4), b=(4,))
  p = jax.tree.map(lambda a: a.astype(jnp.float32), p)
  x = jnp.asarray(np.random.default_rng(22).normal(size=(2, 8, 8, 3)),
                  jnp.float32)
  opts = OPTIONS.get(name, {})
  want = np.asarray(A.get_method(name)(model, p, x, target=1, **opts))
  for wrapped in (A.smooth(name, samples=2, noise_level=0.0, key=0),
                  A.meta(name, learning_rate=0.0)):
    np.testing.assert_allclose(wrapped(model, p, x, target=1, **opts), want,
                               rtol=1e-5, atol=1e-6 * np.abs(want).max())
  noisy = A.smooth(name, samples=2, noise_level=0.2, key=0)(model, p, x,
                                                           target=1, **opts)
  assert not np.allclose(noisy, want)


@pytest.mark.parametrize("method", ["grad_cam", "multi_layer", "deepshap"])
def test_sr_map_on_any_method(method):
  model, variables = sr_jax.load_model("vgg_tiny")
  image = np.random.default_rng(23).integers(0, 256, (32, 32, 3), np.uint8)
  out = sr_jax.sr_map(model, variables, image, arch="vgg_tiny", target=2,
                      method=method, with_image_saliency=False)
  x = sr_jax.models.normalize(out.image[None], "vgg_tiny")
  np.testing.assert_allclose(out.relevance, A.get_method(method)(
      model, variables, x, target=2)[0], rtol=1e-5, atol=1e-6)
  assert out.sr.shape == (32, 32) and np.ptp(out.sr) > 0


# ---- errors -----------------------------------------------------------------

def test_bad_options_are_named():
  p = jax.tree.map(lambda a: a.astype(jnp.float32), _params(
      24, k1=(3, 3, 3, 4), b1=(4,), k2=(3, 3, 4, 5), b2=(5,), w=(125, 3),
      bw=(3,)))
  x = jnp.zeros((1, 9, 9, 3))
  known = "k1, k1/relu, k2, k2/relu, w"
  for name in ("grad_cam", "normgrad", "normgrad_selective",
               "linear_approx", "normgrad_conv"):
    with pytest.raises(ValueError, match=re.escape(
        f"Unknown `layer` (='conv9'); the model's named layers and "
        f"activations are: {known}.")):
      A.get_method(name)(_strided, p, x, layer="conv9")
  with pytest.raises(ValueError, match=re.escape(
      "`layer` (='w', shape=(1, 3)) has no two spatial axes")):
    A.grad_cam(_strided, p, x, layer="w")
  with pytest.raises(ValueError, match=r"`layer` \(='k1/relu'\) must name a "
                     r"convolution layer .* layers are: k1, k2\."):
    A.normgrad_conv(_strided, p, x, layer="k1/relu")
  with pytest.raises(ValueError, match=r"`layer` \(=3\) must be None"):
    A.normgrad(_strided, p, x, layer=3)
  empty = np.zeros((0, 9, 9, 3), np.float32)
  with pytest.raises(ValueError, match=re.escape(
      "`background` (shape=(0, 9, 9, 3)) must be a non-empty stack of "
      "baselines shaped like one example: (B, 9, 9, 3) with B >= 1.")):
    A.deepshap(_strided, p, x, background=empty)
  with pytest.raises(ValueError, match=r"`background` \(shape=\(0, 9, 9, 3\)"
                     r"\) must be a non-empty"):
    A.expected_value(_strided, p, empty)
  with pytest.raises(ValueError, match=r"`baseline` \(shape=\(2, 9, 9, 3\)\) "
                     r"must broadcast to `x`"):
    A.deeplift(_strided, p, x, baseline=np.zeros((2, 9, 9, 3)))
  with pytest.raises(ValueError, match=r"`eps` \(=-1\) must be a number"):
    A.deeplift(_strided, p, x, eps=-1)
  with pytest.raises(ValueError, match=r"`resample_strided` \(='yes'\) must "
                     r"be True or False"):
    A.guided_backprop(_strided, p, x, resample_strided="yes")
  with pytest.raises(ValueError, match=r"`mode` \(='max'\) must be one of "
                     r"'product', 'sum'"):
    A.combine_layers("grad_cam", ["k1/relu"], mode="max")
  with pytest.raises(ValueError, match=r"`weights` \(=\(1, -1\)\) must be "
                     r"one number >= 0 per layer"):
    A.combine_layers("grad_cam", ["k1/relu", "k2/relu"], weights=(1, -1))
  with pytest.raises(ValueError, match=r"`weights` has 3 values; it must "
                     r"have one weight per layer \(=2\)"):
    A.multi_layer(_strided, p, x, weights=(1, 2, 3))
  with pytest.raises(ValueError, match=r"`layers` \(=None\) means every "
                     r"convolution only for the Extract & Aggregate"):
    A.combine_layers("gradient", None)
  with pytest.raises(ValueError, match=r"`learning_rate` \(=-0.1\) must be "
                     r"a number >= 0"):
    A.meta("gradient", learning_rate=-0.1)
  with pytest.raises(ValueError, match=r"Unknown attribution `method` "
                     r"\(='nope'\)"):
    A.meta("nope")


def test_compare_script_lists_every_method():
  from sr_jax.scripts import compare  # pylint: disable=import-outside-toplevel
  assert set(compare.parse_methods("all")) == set(A.METHODS)
  assert compare.parse_methods(" grad_cam, deeplift") == ("grad_cam",
                                                          "deeplift")
  with pytest.raises(ValueError, match=r"Unknown attribution `method` "
                     r"\(='cam'\)"):
    compare.parse_methods("grad_cam,cam")
