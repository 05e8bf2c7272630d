"""ResNet-18 and ResNet-50: torchvision's names, float64 parity, LRP.

The references are plain-torch ResNets with torchvision's module names
(tests/reference/torch_models.py), randomly initialised with random BatchNorm
statistics and affines. Their state dicts go through
`sr_jax.weights.convert_state_dict`; torch (`.double()`) and the Flax port
(float64 variables, `jax.enable_x64`) then compute logits on the same input.
Criterion: max|Δlogit| <= 1e-9 * max|logit|, at 224x224 and at 193x257 (odd
sizes: the stride-2 convs and the padded 3x3/2 max-pool floor there).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sr_jax
from sr_jax import weights
from sr_jax.lrp import Composite, layer_map, rules
from sr_jax.models import resnet

torch = pytest.importorskip("torch")
# pylint: disable-next=wrong-import-position
from tests.reference import torch_models

pytestmark = pytest.mark.torch
RTOL = 1e-9
SIZES = ((224, 224), (193, 257))


@pytest.fixture
def x64():
  """float64 JAX for the test, restored after it."""
  with jax.enable_x64(True):
    yield


@functools.lru_cache(maxsize=2)
def _reference(arch: str):
  """The torch reference (float64, eval) and its state dict as NumPy."""
  model = torch_models.build(arch, seed=1)
  state = {k: v.numpy().copy() for k, v in model.state_dict().items()}
  return model.double(), state


def _to64(variables):
  return jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), variables)


def _input(rng, size, batch=1):
  """A float64 NCHW batch for torch and the same batch NHWC for JAX."""
  x = rng.standard_normal((batch, 3) + size)
  return x, x.transpose(0, 2, 3, 1)


def _hwio(kernel):
  return kernel.transpose(2, 3, 1, 0)


def test_torchvision_path():
  assert resnet.torchvision_path("conv1") == "conv1"
  assert resnet.torchvision_path("fc") == "fc"
  assert resnet.torchvision_path("layer1.0.conv1") == "layer1_0/conv1"
  assert (resnet.torchvision_path("layer4.0.downsample.1")
          == "layer4_0/downsample_1")


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_state_dict_maps_by_name(arch):
  """Every torch tensor lands on its Flax variable, laid out for Flax."""
  _, state = _reference(arch)
  variables = weights.convert_state_dict(state, arch)
  flat = weights.flatten(variables)
  tensors = [k for k in state if not k.endswith("num_batches_tracked")]
  assert len(flat) == len(tensors)
  assert set(flat) == set(weights.expected_shapes(arch))
  for ours, theirs, layout in (
      ("params/conv1/kernel", "conv1.weight", _hwio),
      ("params/layer2_0/downsample_0/kernel", "layer2.0.downsample.0.weight",
       _hwio),
      ("params/layer3_1/bn2/scale", "layer3.1.bn2.weight", np.asarray),
      ("params/layer3_1/bn2/bias", "layer3.1.bn2.bias", np.asarray),
      ("batch_stats/layer4_0/downsample_1/mean",
       "layer4.0.downsample.1.running_mean", np.asarray),
      ("batch_stats/bn1/var", "bn1.running_var", np.asarray),
      ("params/fc/kernel", "fc.weight", np.transpose),
      ("params/fc/bias", "fc.bias", np.asarray)):
    np.testing.assert_array_equal(flat[ours], layout(state[theirs]),
                                  err_msg=ours)


def test_other_resnet_state_dict_is_refused():
  _, state = _reference("resnet18")
  with pytest.raises(ValueError, match=r"do not fit architecture `resnet50`: "
                     r"tensor `params/\S+` .*(missing|has shape)"):
    weights.convert_state_dict(state, "resnet50")


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("arch", [
    "resnet18",
    # ~45 s per size on the shared 2-core machine (float64 convs on XLA:CPU).
    pytest.param("resnet50", marks=pytest.mark.slow)])
def test_logits_match_torch_float64(arch, size, rng, x64):
  del x64
  ref, state = _reference(arch)
  model = sr_jax.models.get_arch(arch).module()
  variables = _to64(weights.convert_state_dict(state, arch))
  x_nchw, x_nhwc = _input(rng, size)
  with torch.no_grad():
    expected = ref(torch.from_numpy(x_nchw)).numpy()
  got = np.asarray(jax.jit(model.apply)(variables, jnp.asarray(x_nhwc)))
  assert got.dtype == np.float64 and got.shape == expected.shape == (1, 1000)
  err, scale = np.abs(got - expected).max(), np.abs(expected).max()
  assert scale > 0 and err <= RTOL * scale, (
      f"{arch} {size}: max|Δ|={err:.3g}, max|ref|={scale:.3g}")


def test_weight_file_round_trip(tmp_path):
  """torch.save -> convert_file -> load_model gives the converted variables."""
  _, state = _reference("resnet18")
  src, dst = tmp_path / "resnet18.pth", tmp_path / "resnet18.safetensors"
  torch.save({k: torch.from_numpy(v) for k, v in state.items()}, src)
  weights.convert_file(src, dst, arch="resnet18")
  assert weights.read_metadata(dst)["arch"] == "resnet18"
  model, variables = sr_jax.load_model("resnet18", weights=dst)
  assert isinstance(model, resnet.ResNet)
  expected = weights.flatten(weights.convert_state_dict(state, "resnet18"))
  got = weights.flatten(variables)
  assert set(got) == set(expected)
  for name, value in expected.items():
    np.testing.assert_array_equal(np.asarray(got[name]), value, err_msg=name)


def _without_folded_biases(variables):
  """Each BatchNorm's shift set to cancel its mean, so that the conv with its
  BatchNorm folded in has no bias; the fc bias zero."""
  flat = weights.flatten(variables)
  for name in list(flat):
    if name.startswith("batch_stats/") and name.endswith("/mean"):
      module = name[len("batch_stats/"):-len("/mean")]
      scale = flat[f"params/{module}/scale"]
      var = flat[f"batch_stats/{module}/var"]
      flat[f"params/{module}/bias"] = flat[name] * scale / jnp.sqrt(var + 1e-5)
  flat["params/fc/bias"] = jnp.zeros_like(flat["params/fc/bias"])
  return weights.unflatten(flat)


CONSERVATIVE = {
    "lrp0": Composite("lrp0", layer_map(rules.zero(), rules.zero(),
                                        pool=rules.zero())),
    "zplus_epsilon": Composite(
        "zplus_epsilon", layer_map(rules.zplus(zero_bias=True),
                                   rules.epsilon(1e-9), pool=rules.zero())),
}


@pytest.mark.parametrize("name", sorted(CONSERVATIVE))
def test_lrp_conserves_target_logit(name, rng, x64):
  """With no bias anywhere (BN folded into its conv) and conservative rules,
  each example's relevance sums to its target logit (issue 12, point 6)."""
  del x64
  _, state = _reference("resnet18")
  model = sr_jax.models.get_arch("resnet18").module()
  variables = _without_folded_biases(
      _to64(weights.convert_state_dict(state, "resnet18")))
  _, x = _input(rng, (65, 97), batch=2)
  x = jnp.asarray(x)
  logits = np.asarray(model.apply(variables, x))
  target = np.array([int(np.argmax(logits[0])), 7])
  r = sr_jax.lrp.relevance(model, variables, x, target=target,
                           composite=CONSERVATIVE[name])
  assert r.shape == x.shape and r.dtype == jnp.float64
  sums = np.asarray(r).sum(axis=(1, 2, 3))
  expected = logits[np.arange(2), target]
  np.testing.assert_allclose(sums, expected, rtol=1e-5, atol=0)


def test_demo_resnet_conserves_without_biases_and_names_its_layers(rng, x64):
  """The second demo architecture: a ResNet without BatchNorm whose convs
  carry biases; with the biases zeroed and conservative rules each
  example's relevance sums to its target logit, as for ResNet-18."""
  del x64
  spec = sr_jax.models.get_arch("demo_resnet")
  model = spec.module()
  variables = sr_jax.models.registry.init_params(
      model, jax.random.PRNGKey(3), spec.input_size)
  assert set(variables) == {"params"}  # no batch statistics
  assert "bias" in variables["params"]["layer2_0"]["downsample_0"]
  variables = jax.tree_util.tree_map_with_path(
      lambda p, a: (jnp.zeros_like(a) if p[-1].key == "bias" else a)
      .astype(jnp.float64), variables)
  x = jnp.asarray(rng.normal(size=(2, 64, 64, 3)))
  logits = np.asarray(model.apply(variables, x))
  taps = sr_jax.attribution.layers(model, variables, x[:1])
  assert {"conv1", "maxpool", "layer1_0/conv2", "layer4_0/downsample_0",
          "avgpool", "fc"} <= set(taps)
  r = sr_jax.lrp.relevance(model, variables, x, target=[1, 5],
                           composite=CONSERVATIVE["lrp0"])
  np.testing.assert_allclose(np.asarray(r).sum(axis=(1, 2, 3)),
                             logits[[0, 1], [1, 5]], rtol=1e-6, atol=0)


def test_resnet_stem_is_checked():
  model = resnet.ResNet(stage_sizes=(1,), block=resnet.BasicBlock,
                        stem="tiny")
  with pytest.raises(ValueError, match=r"`stem` \(='tiny'\) must be"):
    model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))
