"""sr_jax.runtime: the XLA flags set on import, each case in a fresh process
(the malloc settings: tests/test_models.py)."""

import importlib
import json
import os
import subprocess
import sys

import pytest

import sr_jax
from sr_jax import runtime

_PROBE = """
import json, os, sys
{before}
import sr_jax, jax
print(json.dumps({{"devices": len(jax.devices("cpu")),
                  "flags": os.environ.get("XLA_FLAGS", ""),
                  "status": sr_jax.runtime.status()}}))
"""


def _clean_env() -> dict:
  """This process's environment without the variables sr_jax.runtime reads."""
  return {k: v for k, v in os.environ.items()
          if k not in ("XLA_FLAGS", runtime.ENV, runtime.DEVICES_ENV)}


def _probe(env_extra: dict, before: str = "") -> dict:
  env = _clean_env()
  env.update(env_extra)
  out = subprocess.run([sys.executable, "-c", _PROBE.format(before=before)],
                       env=env, capture_output=True, text=True, timeout=300,
                       check=True)
  return json.loads(out.stdout.strip().splitlines()[-1])


YNN = "--xla_cpu_experimental_ynn_fusion_type=individual_dot"


def test_import_gives_one_cpu_device_per_core_and_single_ynn_dots():
  got = _probe({})
  cores = len(os.sched_getaffinity(0))
  want = min(cores, runtime.MAX_CPU_DEVICES)
  assert got["devices"] == want
  assert got["status"]["reason"] == "applied"
  ynn = YNN
  if want == 1:
    assert got["flags"] == ynn
  else:
    assert got["flags"] == (
        f"--xla_force_host_platform_device_count={want} {ynn}")


def test_one_device_on_one_core():
  # The count follows the cores this process may use, not the machine's.
  got = _probe({}, before="os.sched_setaffinity(0, "
               "{min(os.sched_getaffinity(0))})")
  assert got["devices"] == 1
  assert got["flags"] == YNN


def test_one_device_is_the_opt_out():
  got = _probe({runtime.DEVICES_ENV: "1"})
  assert got["devices"] == 1
  assert "device_count" not in got["flags"]


def test_device_count_from_the_environment():
  got = _probe({runtime.DEVICES_ENV: "3"})
  assert got["devices"] == 3
  assert "--xla_force_host_platform_device_count=3" in got["flags"]


@pytest.mark.parametrize("bad", ["0", "-2", "two", "1.5"])
def test_bad_device_count_in_the_environment(bad):
  env = _clean_env()
  env[runtime.DEVICES_ENV] = bad
  out = subprocess.run([sys.executable, "-c", "import sr_jax"], env=env,
                       capture_output=True, text=True, timeout=300,
                       check=False)
  assert out.returncode != 0
  assert f"${runtime.DEVICES_ENV} (={bad!r}) must be an int >= 1" in out.stderr


def test_opt_out_leaves_xla_alone():
  got = _probe({runtime.ENV: "0"})
  assert got["devices"] == 1 and got["flags"] == ""
  assert got["status"] == {"applied": [], "reason": f"${runtime.ENV}=0"}


def test_the_users_own_flags_win():
  got = _probe({"XLA_FLAGS": "--xla_force_host_platform_device_count=3",
                runtime.DEVICES_ENV: "2"})
  assert got["devices"] == 3
  assert got["flags"].count("device_count") == 1
  assert YNN in got["flags"]
  # A YNN setting of the user's own is kept as it is.
  got = _probe({"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type="})
  assert got["flags"].count("ynn_fusion_type") == 1
  assert "--xla_cpu_experimental_ynn_fusion_type= " in got["flags"] + " "


def test_nothing_changes_once_jax_has_started():
  got = _probe({}, before="import jax.numpy as jnp; jnp.zeros(1)")
  assert got["devices"] == 1 and got["flags"] == ""
  assert got["status"]["reason"] == "JAX had already started"


@pytest.mark.parametrize("ynn, flag", [
    (False, "--xla_cpu_experimental_ynn_fusion_type="),
    ("", "--xla_cpu_experimental_ynn_fusion_type="),
    ("individual_dot,eltwise",
     "--xla_cpu_experimental_ynn_fusion_type=individual_dot,eltwise"),
    (True, None)])
def test_ynn_choices(monkeypatch, ynn, flag):
  monkeypatch.setattr(runtime, "_backends_started", lambda: False)
  monkeypatch.setenv("XLA_FLAGS", "")
  added = runtime.configure_cpu(1, ynn=ynn)
  assert added == (() if flag is None else (flag,))
  with pytest.raises(ValueError, match=r"`ynn` \(=1\) must be True"):
    runtime.configure_cpu(1, ynn=1)


# Three dense layers with bias and ReLU, then the input gradient: the shape
# of every classifier head's backward pass.
_DENSE_CHAIN = r"""
import json, re
import sr_jax, jax, jax.numpy as jnp
ws = [jnp.ones((512, 256)), jnp.ones((256, 256)), jnp.ones((256, 10))]
def logits(x):
  for i, w in enumerate(ws):
    x = x @ w + 1.0
    x = jax.nn.relu(x) if i < 2 else x
  return x
x = jnp.ones((8, 512))
got = {"total": 0, "ynn": []}
for fn in (logits, jax.grad(lambda x: logits(x)[:, 0].sum())):
  hlo = jax.jit(fn).lower(x).compile().as_text()
  bodies = dict(re.findall(r"^(%[\w.]+) .*?\n(.*?)^}", hlo, re.S | re.M))
  got["total"] += hlo.count(" dot(")
  for line in hlo.splitlines():
    if '"__ynn_fusion"' in line:
      name = re.search(r"calls=(%[\w.]+)", line).group(1)
      got["ynn"].append(bodies[name].count(" dot("))
print(json.dumps(got))
"""


def test_dense_layers_get_one_ynn_dot_each_and_no_fused_chains():
  """Under the default flags every dot of a dense chain's forward and
  backward pass is its own YNNPACK call (fast `g @ W.T`), and no YNNPACK
  region holds several dots (such regions ran 30x slower, sr_jax.runtime)."""
  out = subprocess.run([sys.executable, "-c", _DENSE_CHAIN], env=_clean_env(),
                       capture_output=True, text=True, timeout=300, check=True)
  got = json.loads(out.stdout.strip().splitlines()[-1])
  assert got["ynn"] and all(n == 1 for n in got["ynn"]), got
  # The forward program's 3 dots, the gradient's 3 forward dots and 2 input
  # gradients.
  assert len(got["ynn"]) >= 8, got


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_bad_device_count(bad):
  with pytest.raises(ValueError, match=r"`devices` \(=.*\) must be None or "
                     r"an int >= 1"):
    runtime.configure_cpu(bad)


def test_default_devices_is_one_per_core_up_to_the_cap(monkeypatch):
  monkeypatch.setattr(runtime, "available_cores", lambda: 3)
  assert runtime.default_devices() == 3
  monkeypatch.setattr(runtime, "available_cores", lambda: 64)
  assert runtime.default_devices() == runtime.MAX_CPU_DEVICES


def test_allocator_is_a_deprecated_alias_of_runtime(monkeypatch):
  monkeypatch.delitem(sys.modules, "sr_jax.models.allocator", raising=False)
  if "allocator" in vars(sr_jax.models):  # (getattr would import it)
    monkeypatch.delattr(sr_jax.models, "allocator")
  with pytest.warns(DeprecationWarning,
                    match=r"sr_jax\.models\.allocator is deprecated"):
    old = sr_jax.models.allocator
  assert old is importlib.import_module("sr_jax.models.allocator")
  assert old.keep_freed_memory is runtime.keep_freed_memory
  assert old.tune_from_env is runtime.tune_malloc_from_env
  assert old.is_tuned is runtime.malloc_is_tuned
  assert old.ENV == runtime.MALLOC_ENV == "SR_JAX_TUNE_MALLOC"

