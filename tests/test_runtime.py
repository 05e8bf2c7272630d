"""sr_jax.runtime: the XLA flags set on import, each case in a fresh process."""

import json
import os
import subprocess
import sys

import pytest

from sr_jax import runtime

_PROBE = """
import json, os, sys
{before}
import sr_jax, jax
print(json.dumps({{"devices": len(jax.devices("cpu")),
                  "flags": os.environ.get("XLA_FLAGS", ""),
                  "status": sr_jax.runtime.status()}}))
"""


def _probe(env_extra: dict, before: str = "") -> dict:
  env = {k: v for k, v in os.environ.items()
         if k not in ("XLA_FLAGS", runtime.ENV)}
  env.update(env_extra)
  out = subprocess.run([sys.executable, "-c", _PROBE.format(before=before)],
                       env=env, capture_output=True, text=True, timeout=300,
                       check=True)
  return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_gives_one_cpu_device_per_core_and_no_ynn():
  got = _probe({})
  want = min(runtime.available_cores(), runtime.MAX_CPU_DEVICES)
  assert got["devices"] == want
  assert f"--xla_force_host_platform_device_count={want}" in got["flags"]
  assert "--xla_cpu_experimental_ynn_fusion_type=" in got["flags"]
  assert got["status"]["reason"] == "applied"


def test_opt_out_leaves_xla_alone():
  got = _probe({runtime.ENV: "0"})
  assert got["devices"] == 1 and got["flags"] == ""
  assert got["status"] == {"applied": [], "reason": f"${runtime.ENV}=0"}


def test_the_users_own_flags_win():
  got = _probe({"XLA_FLAGS": "--xla_force_host_platform_device_count=3"})
  assert got["devices"] == 3
  assert got["flags"].count("device_count") == 1
  assert "--xla_cpu_experimental_ynn_fusion_type=" in got["flags"]


def test_nothing_changes_once_jax_has_started():
  got = _probe({}, before="import jax.numpy as jnp; jnp.zeros(1)")
  assert got["devices"] == 1 and got["flags"] == ""
  assert got["status"]["reason"] == "JAX had already started"


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_bad_device_count(bad):
  with pytest.raises(ValueError, match=r"`devices` \(=.*\) must be None or "
                     r"an int >= 1"):
    runtime.configure_cpu(bad)
