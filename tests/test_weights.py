"""sr_jax.weights: conversion rules, file format, validation errors, fetch, CLI.

Parity of whole models through these paths is in test_models.py; here the
rules are checked element by element against index arithmetic written out
independently, on the tiny VGG (and a tiny BatchNorm VGG registered per test).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import http.server
import json
import pathlib
import subprocess
import sys
import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy

import sr_jax
from sr_jax import weights
from sr_jax.models import registry
from sr_jax.models import vgg

ROOT = pathlib.Path(__file__).resolve().parent.parent
TINY_SHAPES = {  # torchvision layout of vgg_tiny: cfg (8, M, 16, M, 16, M)
    "features.0.weight": (8, 3, 3, 3), "features.0.bias": (8,),
    "features.3.weight": (16, 8, 3, 3), "features.3.bias": (16,),
    "features.6.weight": (16, 16, 3, 3), "features.6.bias": (16,),
    "classifier.0.weight": (32, 64), "classifier.0.bias": (32,),
    "classifier.3.weight": (32, 32), "classifier.3.bias": (32,),
    "classifier.6.weight": (10, 32), "classifier.6.bias": (10,),
}


def tiny_state_dict(seed=0, shapes=None):
  rng = np.random.default_rng(seed)
  return {k: rng.standard_normal(s).astype(np.float32)
          for k, s in (shapes or TINY_SHAPES).items()}


@pytest.fixture
def tiny_bn(monkeypatch):
  """Registers `vgg_tiny_bn` (vgg_tiny with BatchNorm) for one test."""
  spec = registry.ArchSpec(
      "vgg_tiny_bn", functools.partial(vgg.vgg_tiny, batch_norm=True), 10,
      registry.Preprocessing(resize=None, crop=None), input_size=32,
      class_names="none")
  monkeypatch.setitem(registry.ARCHS, "vgg_tiny_bn", spec)
  return spec


@pytest.fixture
def tiny_file(tmp_path):
  variables = weights.convert_state_dict(tiny_state_dict(), "vgg_tiny")
  return weights.save(tmp_path / "tiny.safetensors", variables,
                      arch="vgg_tiny", metadata={"source_layout": "test"})


# -- conversion rules ---------------------------------------------------------

def test_conv_and_dense_rules_elementwise():
  sd = tiny_state_dict()
  p = weights.convert_state_dict(sd, "vgg_tiny")["params"]
  w = sd["features.3.weight"]  # OIHW
  k = np.asarray(p["features_3"]["kernel"])  # HWIO
  for o, i, h, x in [(0, 0, 0, 0), (15, 7, 2, 1), (3, 5, 1, 2)]:
    assert k[h, x, i, o] == w[o, i, h, x]
  np.testing.assert_array_equal(p["classifier_3"]["kernel"],
                                sd["classifier.3.weight"].T)
  np.testing.assert_array_equal(p["classifier_6"]["bias"],
                                sd["classifier.6.bias"])


def test_batchnorm_rule(tiny_bn):
  # vgg_tiny_bn: conv 0, BN 1, ReLU 2, pool 3, conv 4, BN 5, ..., BN 9.
  shapes = {k: s for k, s in TINY_SHAPES.items() if k.startswith("classifier")}
  for conv, (o, i) in zip((0, 4, 8), ((8, 3), (16, 8), (16, 16))):
    shapes[f"features.{conv}.weight"] = (o, i, 3, 3)
    shapes[f"features.{conv}.bias"] = (o,)
    for name in ("weight", "bias", "running_mean", "running_var"):
      shapes[f"features.{conv + 1}.{name}"] = (o,)
  sd = tiny_state_dict(1, shapes)
  for k in sd:
    if k.endswith("running_var"):
      sd[k] = np.abs(sd[k]) + np.float32(0.1)
  sd["features.1.num_batches_tracked"] = np.array(7, np.int64)
  v = weights.convert_state_dict(sd, tiny_bn.name)
  np.testing.assert_array_equal(v["params"]["features_5"]["scale"],
                                sd["features.5.weight"])
  np.testing.assert_array_equal(v["params"]["features_5"]["bias"],
                                sd["features.5.bias"])
  np.testing.assert_array_equal(v["batch_stats"]["features_9"]["mean"],
                                sd["features.9.running_mean"])
  np.testing.assert_array_equal(v["batch_stats"]["features_1"]["var"],
                                sd["features.1.running_var"])
  # BatchNorm in eval mode, written out: (x - mean) / sqrt(var + eps) * w + b.
  x = np.random.default_rng(2).standard_normal((1, 32, 32, 3))
  model = tiny_bn.module()
  _, state = model.apply(v, jnp.asarray(x, jnp.float32),
                         capture_intermediates=lambda m, _: m.name == "features_1",
                         mutable=["intermediates"])
  got = np.asarray(state["intermediates"]["features_1"]["__call__"][0])
  conv = jax.lax.conv_general_dilated(
      jnp.asarray(x, jnp.float32), v["params"]["features_0"]["kernel"],
      (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"))
  z = np.asarray(conv, np.float64) + sd["features.0.bias"]
  ref = ((z - sd["features.1.running_mean"]) /
         np.sqrt(sd["features.1.running_var"].astype(np.float64) + 1e-5) *
         sd["features.1.weight"] + sd["features.1.bias"])
  np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_timm_dense_from_conv_uses_nchw_flatten_order():
  """fc1 (out, c, h, w) -> kernel[c*h_n*w_n + h*w_n + w, out] (2x2 pool here)."""
  sd = tiny_state_dict()
  w = sd.pop("classifier.0.weight").reshape(32, 16, 2, 2)
  b = sd.pop("classifier.0.bias")
  sd["pre_logits.fc1.weight"], sd["pre_logits.fc1.bias"] = w, b
  sd["pre_logits.fc2.weight"] = sd.pop("classifier.3.weight")[:, :, None, None]
  sd["pre_logits.fc2.bias"] = sd.pop("classifier.3.bias")
  sd["head.fc.weight"] = sd.pop("classifier.6.weight")
  sd["head.fc.bias"] = sd.pop("classifier.6.bias")
  assert weights.detect_layout(sd) == "timm"
  p = weights.convert_state_dict(sd, "vgg_tiny", layout="timm")["params"]
  k = np.asarray(p["classifier_0"]["kernel"])
  for o, c, h, x in [(0, 0, 0, 1), (31, 15, 1, 1), (7, 9, 1, 0)]:
    assert k[c * 4 + h * 2 + x, o] == w[o, c, h, x]
  assert p["classifier_3"]["kernel"].shape == (32, 32)


def test_vgg_face_dag_names_are_vgg16_conv_indices():
  """conv1_1..conv5_3 land on the conv positions of torchvision's VGG-16."""
  idx, convs = 0, []
  for v in vgg.CFGS["D"]:
    if v != "M":
      convs.append(idx)
    idx += 1 if v == "M" else 2  # conv + ReLU
  names = [weights.convert._FACE_NAMES[c] for c in weights.convert._FACE_CONVS]  # pylint: disable=protected-access
  assert names == [f"features.{i}" for i in convs]
  assert weights.detect_layout({"conv1_1.weight": 0}) == "vgg_face_dag"


# -- files --------------------------------------------------------------------

def test_save_load_roundtrip_and_metadata(tiny_file):
  meta = weights.read_metadata(tiny_file)
  assert meta["arch"] == "vgg_tiny" and meta["num_classes"] == "10"
  assert meta["source_layout"] == "test" and meta["format"] == weights.FORMAT
  assert json.loads(meta["preprocessing"])["resize"] is None
  model, v = weights.load(tiny_file)  # arch from the metadata
  ref = weights.convert_state_dict(tiny_state_dict(), "vgg_tiny")
  jax.tree.map(np.testing.assert_array_equal, v, ref)
  assert model.apply(v, jnp.zeros((1, 32, 32, 3))).shape == (1, 10)
  assert tiny_file.stat().st_mode & 0o777 == 0o644


def test_bundled_path(tmp_path, monkeypatch, tiny_file):
  monkeypatch.setenv("SR_JAX_WEIGHTS_DIR", str(tiny_file.parent))
  assert weights.bundled_path("tiny") == tiny_file
  assert weights.bundled_path("no_such_model") is None


def _rewrite(path, flat_edit):
  with safetensors.safe_open(str(path), framework="numpy") as f:
    meta, flat = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
  flat_edit(flat)
  safetensors.numpy.save_file(flat, str(path), metadata=meta)


@pytest.mark.parametrize("edit,match", [
    (lambda f: f.pop("params/features_6/bias"),
     r"architecture `vgg_tiny`: tensor `params/features_6/bias` \(expected "
     r"shape \(16,\)\) is missing"),
    (lambda f: f.update({"params/features_9/kernel": np.zeros(3, np.float32),
                         "params/zz/bias": np.zeros(1, np.float32)}),
     r"unexpected tensor `params/features_9/kernel` \(shape \(3,\)\) and 1 "
     r"more"),
    (lambda f: f.update({"params/classifier_3/kernel": np.zeros(
        (32, 32), np.float16)}),
     r"tensor `params/classifier_3/kernel` has dtype float16, expected "
     r"float32"),
    (lambda f: f.update({"params/features_3/kernel": np.zeros(
        (3, 3, 16, 8), np.float32)}),
     r"tensor `params/features_3/kernel` has shape \(3, 3, 16, 8\), expected "
     r"\(3, 3, 8, 16\)"),
])
def test_load_rejects_bad_tensors(tiny_file, edit, match):
  _rewrite(tiny_file, edit)
  with pytest.raises(ValueError, match=match):
    sr_jax.load_model("vgg_tiny", weights=tiny_file)


def test_load_wrong_architecture(tiny_file):
  with pytest.raises(ValueError, match=(
      r"Weights in '.*tiny.safetensors' \(the file says arch='vgg_tiny'\) do "
      r"not fit architecture `vgg11`: tensor `params/features_0/kernel` has "
      r"shape \(3, 3, 3, 8\), expected \(3, 3, 3, 64\)")):
    sr_jax.load_model("vgg11", weights=tiny_file)


def test_load_shapes_fit_but_file_names_other_arch(tiny_file, monkeypatch):
  monkeypatch.setitem(registry.ARCHS, "vgg_tiny2", registry.ARCHS["vgg_tiny"])
  with pytest.raises(ValueError, match=r"holds weights for 'vgg_tiny', not for "
                     r"`arch` \(='vgg_tiny2'\)"):
    weights.load(tiny_file, arch="vgg_tiny2")


def test_unknown_arch_lists_known(tiny_file):
  known = r"known architectures: alexnet, .*vgg16, .*vgg_tiny"
  for call in (lambda: weights.load(tiny_file, arch="no_such_arch"),
               lambda: weights.convert_file(tiny_file, tiny_file,
                                            arch="no_such_arch"),
               lambda: weights.fetch("no_such_arch")):
    with pytest.raises(ValueError, match=rf"\(='no_such_arch'\); {known}"):
      call()


@pytest.mark.parametrize("damage", ["half", "header", "empty", "garbage"])
def test_corrupt_safetensors(tiny_file, damage):
  data = tiny_file.read_bytes()
  data = {"half": data[:len(data) // 2], "header": data[:8] + b"{not json" +
          data[17:], "empty": b"", "garbage": b"\x00" * 64}[damage]
  tiny_file.write_bytes(data)
  msg = r"`path` \(='.*tiny.safetensors'\) is not a readable safetensors file"
  with pytest.raises(ValueError, match=msg):
    weights.load(tiny_file)
  with pytest.raises(ValueError, match=msg):
    weights.read_metadata(tiny_file)


def test_missing_file(tmp_path):
  with pytest.raises(FileNotFoundError, match=r"`path` \(='.*nope'\) is not "
                     "a file"):
    weights.load(tmp_path / "nope")


def test_no_arch_metadata(tmp_path):
  path = tmp_path / "bare.safetensors"
  safetensors.numpy.save_file({"a": np.zeros(1, np.float32)}, str(path))
  with pytest.raises(ValueError, match=r"has no `arch` metadata; pass `arch=`"
                     r" \(one of alexnet, "):
    weights.load(path)


def test_convert_state_dict_errors():
  sd = tiny_state_dict()
  with pytest.raises(ValueError, match=r"`layout` \(='keras'\) must be one of "
                     r"\('torchvision', 'timm', 'vgg_face_dag'\)"):
    weights.convert_state_dict(sd, "vgg_tiny", layout="keras")
  bad = dict(sd, **{"features.0.weight": np.zeros((8, 3, 3, 3), np.int32)})
  with pytest.raises(ValueError, match=r"`features.0.weight` has dtype int32"):
    weights.convert_state_dict(bad, "vgg_tiny")
  extra = dict(sd, **{"features.1.weight": np.zeros(8, np.float32)})
  with pytest.raises(ValueError, match=r"the torchvision state dict do not fit "
                     r"architecture `vgg_tiny`: unexpected tensor "
                     r"`features.1.weight`"):
    weights.convert_state_dict(extra, "vgg_tiny")
  sd.pop("features.6.weight")
  with pytest.raises(ValueError, match=r"tensor `params/features_6/kernel` "
                     r"\(expected shape \(3, 3, 16, 16\)\) is missing"):
    weights.convert_state_dict(sd, "vgg_tiny")


def test_convert_safetensors_state_dict(tmp_path):
  """A .safetensors state dict converts without torch (e.g. timm's files)."""
  src, dst = tmp_path / "sd.safetensors", tmp_path / "out.safetensors"
  sd = tiny_state_dict(4)
  safetensors.numpy.save_file(sd, str(src))
  weights.convert_file(src, dst, arch="vgg_tiny")
  meta = weights.read_metadata(dst)
  assert meta["source_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
  assert meta["source_layout"] == "torchvision"
  _, v = weights.load(dst)
  np.testing.assert_array_equal(v["params"]["classifier_0"]["kernel"],
                                sd["classifier.0.weight"].T)


# -- .pth files (torch) -------------------------------------------------------

class _Boom:
  """Unpickling this would create a file: weights_only must refuse it."""

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return (pathlib.Path.touch, (pathlib.Path(self.marker),))


@pytest.mark.parametrize("kind", ["truncated", "pickle", "not_a_dict"])
def test_bad_pth(tmp_path, kind):
  torch = pytest.importorskip("torch")
  src, marker = tmp_path / "bad.pth", tmp_path / "pwned"
  sd = {k: torch.from_numpy(v) for k, v in tiny_state_dict().items()}
  if kind == "truncated":
    torch.save(sd, src)
    src.write_bytes(src.read_bytes()[:3000])
    match = r"`src` \(='.*bad.pth'\) is not a readable PyTorch state dict"
  elif kind == "pickle":
    torch.save({"x": _Boom(marker)}, src)
    match = r"holding pickled objects beyond tensors, which weights_only"
  else:
    torch.save([sd["features.0.bias"]], src)
    match = r"`src` \(='.*bad.pth'\) does not hold a state dict .*list"
  with pytest.raises(ValueError, match=match):
    weights.convert_file(src, tmp_path / "out.safetensors", arch="vgg_tiny")
  assert not marker.exists()
  assert not (tmp_path / "out.safetensors").exists()


def test_cli_converts_pth(tmp_path):
  torch = pytest.importorskip("torch")
  src, dst = tmp_path / "tiny.pth", tmp_path / "tiny.safetensors"
  sd = tiny_state_dict(5)
  torch.save({"state_dict": {f"module.{k}": torch.from_numpy(v)
                             for k, v in sd.items()}}, src)
  cmd = [sys.executable, "-m", "sr_jax.scripts.convert", "--arch=vgg_tiny",
         f"--src={src}", f"--dst={dst}"]
  done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                        timeout=120, check=False)
  assert done.returncode == 0, done.stderr
  assert f"Wrote {dst} (arch=vgg_tiny, layout=torchvision" in done.stdout
  _, v = weights.load(dst)
  np.testing.assert_array_equal(v["params"]["features_0"]["bias"],
                                sd["features.0.bias"])
  bad = subprocess.run(cmd[:4], cwd=ROOT, capture_output=True, text=True,
                       timeout=120, check=False)
  assert bad.returncode != 0 and "--src" in bad.stderr
  # A ValueError is one line on stderr and exit status 2, not a traceback.
  wrong = subprocess.run(cmd + ["--layout=keras"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120,
                         check=False)
  assert wrong.returncode == 2, wrong.stderr
  assert wrong.stderr.splitlines() == [
      "error: `layout` (='keras') must be one of ('torchvision', 'timm', "
      "'vgg_face_dag')."]


# -- PyTorch files in disguise --------------------------------------------------

@pytest.mark.parametrize("zipfile", [True, False], ids=["zip", "legacy_pickle"])
def test_pytorch_file_named_safetensors(tmp_path, zipfile):
  """A torch.save file renamed to .safetensors is named as what it is, with
  the converter to use, and is never unpickled; the converter reads it."""
  torch = pytest.importorskip("torch")
  sd = {k: torch.from_numpy(v) for k, v in tiny_state_dict(3).items()}
  disguised = tmp_path / "tiny.safetensors"
  torch.save(sd, disguised, _use_new_zipfile_serialization=zipfile)
  what = (r"is a zip archive, as torch.save writes" if zipfile else
          r"is a Python pickle, as torch.save writes with "
          r"_use_new_zipfile_serialization=False")
  msg = (rf"`path` \(='.*tiny.safetensors'\) {what} \(a PyTorch checkpoint\?\), "
         r"not a safetensors file; it is not unpickled. sr-jax-convert "
         r"\(python -m sr_jax.scripts.convert\) turns a PyTorch state dict "
         r"into safetensors: `sr-jax-convert --arch=ARCH --src=.*tiny"
         r"\.safetensors --dst=OUT.safetensors`")
  for call in (lambda: weights.load(disguised, arch="vgg_tiny"),
               lambda: weights.read_metadata(disguised),
               lambda: sr_jax.load_model("vgg_tiny", weights=disguised)):
    with pytest.raises(ValueError, match=msg):
      call()
  assert weights.sniff(disguised) == ("zip" if zipfile else "pickle")
  dst = weights.convert_file(disguised, tmp_path / "out.safetensors",
                             arch="vgg_tiny")
  _, v = weights.load(dst)
  np.testing.assert_array_equal(v["params"]["features_3"]["bias"],
                                sd["features.3.bias"].numpy())


@pytest.mark.parametrize("zipfile", [True, False], ids=["zip", "legacy_pickle"])
def test_disguised_pickle_is_not_unpickled(tmp_path, zipfile):
  torch = pytest.importorskip("torch")
  disguised, marker = tmp_path / "evil.safetensors", tmp_path / "pwned"
  torch.save({"x": _Boom(marker)}, disguised,
             _use_new_zipfile_serialization=zipfile)
  with pytest.raises(ValueError, match=r"as torch.save writes"):
    weights.load(disguised, arch="vgg_tiny")
  assert not marker.exists()


def test_sniff_leaves_safetensors_and_other_files_alone(tiny_file, tmp_path):
  assert weights.sniff(tiny_file) is None
  # A safetensors header of 640 bytes starts with 0x80 0x02, like a pickle:
  # only a file safetensors cannot read is sniffed.
  header = json.dumps({"__metadata__": {"pad": "x" * 600}}).encode()
  header += b" " * (640 - len(header))
  odd = tmp_path / "odd.safetensors"
  odd.write_bytes((640).to_bytes(8, "little") + header)
  assert odd.read_bytes()[:2] == b"\x80\x02"
  assert weights.read_metadata(odd) == {"pad": "x" * 600}
  text = tmp_path / "notes.safetensors"
  text.write_bytes(b"PK but not a zip")
  with pytest.raises(ValueError, match=r"not a readable safetensors file "
                     r"\(truncated or corrupt\?\)"):
    weights.read_metadata(text)


# -- one atomic writer ----------------------------------------------------------

def test_save_writes_through_io_atomic_write(tmp_path, monkeypatch):
  from sr_jax import files  # pylint: disable=import-outside-toplevel
  variables = weights.convert_state_dict(tiny_state_dict(), "vgg_tiny")
  path = weights.save(tmp_path / "w.safetensors", variables, arch="vgg_tiny")
  before = path.read_bytes()
  calls = []
  real = files.atomic_write

  def failing(target, data):
    calls.append(pathlib.Path(target))
    real(target, data[:100])  # the old contents are replaced only whole ...
    raise OSError("disk full")  # ... so fail after a good write of junk
  monkeypatch.setattr(files, "atomic_write", failing)
  other = weights.convert_state_dict(tiny_state_dict(9), "vgg_tiny")
  with pytest.raises(OSError, match="disk full"):
    weights.save(path, other, arch="vgg_tiny")
  assert calls == [path]
  monkeypatch.setattr(files, "atomic_write", real)
  path.write_bytes(before)
  monkeypatch.setattr(files.os, "fsync", _raise_os_error)
  with pytest.raises(OSError, match="no space"):
    weights.save(path, other, arch="vgg_tiny")
  assert path.read_bytes() == before  # untouched by the failed write
  assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]


def _raise_os_error(*args):
  raise OSError("no space")


# -- model loading and import direction -----------------------------------------

def test_load_model_lives_in_models_loading(tmp_path, monkeypatch, tiny_file):
  from sr_jax.models import loading  # pylint: disable=import-outside-toplevel
  assert sr_jax.load_model is sr_jax.models.load_model is loading.load_model
  monkeypatch.setenv(weights.WEIGHTS_DIR_ENV, str(tmp_path / "none"))
  demo = ROOT / "weights" / "demo_vgg.safetensors"
  assert loading.resolve_weights("demo_vgg", None) == str(demo)
  assert loading.resolve_weights("vgg_tiny", None) is None
  assert loading.resolve_weights("vgg_tiny", "x.safetensors") == "x.safetensors"
  monkeypatch.setenv(weights.WEIGHTS_DIR_ENV, str(tiny_file.parent))
  tiny_file.rename(tiny_file.parent / "vgg_tiny.safetensors")
  _, v = loading.load_model("vgg_tiny")  # the shipped file wins ...
  np.testing.assert_array_equal(v["params"]["classifier_6"]["bias"],
                                tiny_state_dict()["classifier.6.bias"])
  _, r = loading.load_model("vgg_tiny", key=jax.random.PRNGKey(0))  # ... not
  assert not np.array_equal(r["params"]["classifier_6"]["kernel"],
                            v["params"]["classifier_6"]["kernel"])


def test_weights_import_nothing_of_models():
  """weights reads the table of architectures (`sr_jax.archs`); the models
  load weights (`models.loading`), never the other way round."""
  from tests.test_imports import import_graph  # pylint: disable=import-outside-toplevel
  graph = import_graph()
  for name, deps in graph.items():
    if name == "sr_jax.weights" or name.startswith("sr_jax.weights."):
      assert not {d for d in deps if d.startswith("sr_jax.models")}, name
      assert "sr_jax.archs" in deps or name == "sr_jax.weights"
  assert "sr_jax.weights" in graph["sr_jax.models.loading"]
  assert not {d for d in graph["sr_jax.models.registry"]
              if d.startswith(("sr_jax.weights", "sr_jax.models.loading"))}


def test_torch_paths_come_from_the_spec(monkeypatch):
  """A spec's `torch_path` maps torch module names (here: a renamed
  vgg_tiny whose torch modules are called `body.N` / `head.N`)."""
  spec = registry.ARCHS["vgg_tiny"]
  renamed = {"body": "features", "head": "classifier"}
  monkeypatch.setitem(registry.ARCHS, "vgg_tiny_renamed", dataclasses.replace(
      spec, name="vgg_tiny_renamed",
      torch_path=lambda m: "_".join([renamed[m.split(".")[0]],
                                     *m.split(".")[1:]])))
  sd = tiny_state_dict(2)
  torch_named = {k.replace("features", "body").replace("classifier", "head"): v
                 for k, v in sd.items()}
  got = weights.convert_state_dict(torch_named, "vgg_tiny_renamed")
  want = weights.convert_state_dict(sd, "vgg_tiny")
  jax.tree.map(np.testing.assert_array_equal, got, want)
  assert registry.ARCHS["vgg_tiny"].torch_path("features.3") == "features_3"
  assert registry.ARCHS["resnet18"].torch_path("layer2.0.downsample.0") == (
      "layer2_0/downsample_0")


def test_docstring_examples_run():
  import doctest  # pylint: disable=import-outside-toplevel
  from sr_jax.models import loading  # pylint: disable=import-outside-toplevel
  for module in (weights.format, weights.convert, weights.hub, loading):
    failed, attempted = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert failed == 0, module.__name__
  assert doctest.testmod(weights.convert).attempted >= 5


# -- fetch --------------------------------------------------------------------

@contextlib.contextmanager
def serve(directory):
  """A quiet HTTP server on 127.0.0.1 for `directory`, in a thread."""

  class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # pylint: disable=arguments-differ
      pass

  handler = functools.partial(Quiet, directory=str(directory))
  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  try:
    yield f"http://127.0.0.1:{server.server_address[1]}/"
  finally:
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def served(tmp_path):
  """A served torchvision-layout safetensors file named with its sha256."""
  www = tmp_path / "www"
  www.mkdir()
  tmp = www / "tmp.safetensors"
  safetensors.numpy.save_file(tiny_state_dict(6), str(tmp))
  digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
  name = f"vgg_tiny-{digest[:8]}.safetensors"
  tmp.rename(www / name)
  (www / f"vgg_tiny-{'0' * 8}.safetensors").write_bytes((www / name)
                                                        .read_bytes())
  with serve(www) as url:
    yield url, name, digest


def test_fetch_downloads_verifies_converts_caches(tmp_path, served):
  base, name, digest = served
  cache = tmp_path / "cache"
  path = weights.fetch("vgg_tiny", cache, url=base + name, timeout=10)
  assert path == cache / "vgg_tiny.safetensors"
  meta = weights.read_metadata(path)
  assert meta["source_sha256"] == digest and meta["arch"] == "vgg_tiny"
  assert sorted(p.name for p in cache.iterdir()) == ["vgg_tiny.safetensors"]
  # Cached: no server needed the second time.
  assert weights.fetch("vgg_tiny", cache, url="http://127.0.0.1:9/x") == path


def test_fetch_base_url_env(tmp_path, served, monkeypatch):
  base, name, _ = served
  monkeypatch.setitem(weights.TORCHVISION_FILES, "vgg_tiny", name)
  monkeypatch.setenv(weights.BASE_URL_ENV, base)
  path = weights.fetch("vgg_tiny", tmp_path / "c1")
  _, v = weights.load(path)
  np.testing.assert_array_equal(v["params"]["features_0"]["bias"],
                                tiny_state_dict(6)["features.0.bias"])
  path = weights.fetch("vgg_tiny", tmp_path / "c2", base_url=base)
  assert path.is_file()


def test_fetch_rejects_hash_mismatch(tmp_path, served):
  base, _, digest = served
  cache = tmp_path / "cache"
  with pytest.raises(ValueError, match=rf"has sha256 {digest}, which does not "
                     r"start with 00000000"):
    weights.fetch("vgg_tiny", cache, url=f"{base}vgg_tiny-00000000.safetensors")
  assert not list(cache.iterdir())  # neither the download nor a result


def test_fetch_offline_fails_fast_with_advice(tmp_path, served, monkeypatch):
  base, name, _ = served
  advice = (r"convert it: `python -m sr_jax.scripts.convert --arch=vgg_tiny "
            rf"--src=PATH/{name} --dst=.*vgg_tiny.safetensors`")
  with pytest.raises(ConnectionError, match=r"Could not download .*404.*"
                     + advice):
    weights.fetch("vgg_tiny", tmp_path, url=base + "no/" + name)
  with pytest.raises(ConnectionError, match=r"Could not download http://"
                     r"127.0.0.1:9/.*Connection refused.*" + advice):
    weights.fetch("vgg_tiny", tmp_path, url="http://127.0.0.1:9/" + name,
                  timeout=5)
  monkeypatch.setenv(weights.OFFLINE_ENV, "1")
  with pytest.raises(ConnectionError, match=r"SR_JAX_OFFLINE is set"):
    weights.fetch("vgg_tiny", tmp_path, url=base + name)
  assert not list(tmp_path.glob("*.safetensors"))


def test_fetch_without_official_file():
  with pytest.raises(ValueError, match=r"No official download for `arch` "
                     r"\(='vgg_tiny'\); known: alexnet, vgg11"):
    weights.fetch("vgg_tiny")


def test_official_names_carry_hash_prefixes():
  for arch, name in weights.TORCHVISION_FILES.items():
    registry.get_arch(arch)
    assert name.startswith(arch.replace("alexnet", "alexnet-owt"))
    assert len(name.rsplit("-", 1)[1].split(".")[0]) == 8
