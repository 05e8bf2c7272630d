"""Reproduces wrong XLA:CPU results when two computations run at once.

    python benchmarks/xla_cpu_concurrency.py            # about 1.5-3 minutes
    python benchmarks/xla_cpu_concurrency.py --max_side 120 --images 4 \
        --json /tmp/c.json                              # the suite's quick form


Why `sr_jax.runtime` keeps JAX at one CPU device (benchmarks/README.md,
"XLA:CPU and concurrent computations"). Eight 250-px context-aware saliency
maps (scikit-image's `coffee`, rolled sideways by 37 px per image) are
computed three ways, and each is compared with the same maps computed one
image at a time on one device:

* `devices`: `context_aware_batch` split by image over 2 CPU devices (one
  program per device, running at the same time);
* `threads`: the one-device jitted batch function called from two Python
  threads at once, on the same device (no sharding involved);
* `sequential`: the same function called twice, one call after the other.

Seen with jax/jaxlib 0.9.2 and 0.10.2 on one 2-core AMD EPYC VM: `devices`
and `threads` get maps wrong by up to 0.54 (on a [0, 1] scale) for some
images, the first wrong value being one 84x14 tile of a resize's matrix
product; `sequential` matches to the bit; pinned to one core (`taskset -c 0`)
all three match. Nine runs on two other 2-core AMD EPYC VMs with the same
software gave exactly 0 everywhere (benchmarks/README.md).
tests/test_xla_cpu_concurrency.py runs a smaller form of this script
(`--max_side`, `--images`) and fails unless every row is exactly 0.

Prints a table and writes benchmarks/results/xla_cpu_concurrency.json
(`--json`), with the CPU model from /proc/cpuinfo. The exit status is 0
either way: this is a diagnosis; the test is the check.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import sys
import threading
import time

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")

# pylint: disable=wrong-import-position
import jax  # noqa: E402
import numpy as np  # noqa: E402
from skimage import data  # noqa: E402

import sr_jax  # noqa: E402
from sr_jax.saliency import options as options_lib  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "xla_cpu_concurrency.json"
# The module, not the function the package re-exports under the same name.
ca = sys.modules["sr_jax.saliency.context_aware"]


def _images(n: int) -> np.ndarray:
  image = data.coffee()
  return np.stack([np.roll(image, 37 * i, axis=1) for i in range(n)])


def _cpu_model() -> dict[str, str]:
  """The first processor's identity in /proc/cpuinfo (Linux; else empty)."""
  keys = ("model name", "cpu family", "model", "stepping", "microcode")
  info: dict[str, str] = {}
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        key, _, value = line.partition(":")
        key = key.strip()
        if not key:
          break
        if key in keys:
          info[key] = value.strip()
  except OSError:
    pass
  return info


def _errors(got: np.ndarray, want: np.ndarray) -> list[float]:
  return [float(np.max(np.abs(g - w))) for g, w in zip(got, want)]


def _parse() -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--images", type=int, default=8,
                      help="maps to compute (even; default 8)")
  parser.add_argument("--max_side", type=int, default=250,
                      help="saliency working size (default 250)")
  parser.add_argument("--json", default=str(RESULTS), help="where the JSON goes")
  args = parser.parse_args()
  if args.images < 2 or args.images % 2:
    parser.error(f"--images (={args.images}) must be an even int >= 2")
  return args


def main() -> None:
  args = _parse()
  if len(jax.devices()) < 2:
    sys.exit("needs 2 CPU devices: run without XLA_FLAGS set, or with "
             "--xla_force_host_platform_device_count=2 in it")
  images = _images(args.images)
  half = args.images // 2
  start = time.perf_counter()
  reference = np.asarray(sr_jax.saliency.context_aware_batch(
      images, num_devices=1, max_side=args.max_side))
  rows = {}
  rows["devices"] = _errors(np.asarray(sr_jax.saliency.context_aware_batch(
      images, num_devices=2, max_side=args.max_side)), reference)

  plan = options_lib.make_plan(
      images.shape[1:3], options_lib.Options.create(max_side=args.max_side))
  halves = [jax.device_put(images[:half], jax.devices()[0]),
            jax.device_put(images[half:], jax.devices()[0])]
  run = lambda x: np.asarray(ca._batch(x, plan, None))  # pylint: disable=protected-access
  run(halves[0])  # compiled before the compared calls
  sequential = np.concatenate([run(h) for h in halves])
  rows["sequential"] = _errors(sequential, reference)
  out = [None, None]

  def worker(i):
    out[i] = run(halves[i])

  threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  rows["threads"] = _errors(np.concatenate(out), reference)
  seconds = time.perf_counter() - start

  cpu = _cpu_model()
  print(f"max |map - one-at-a-time map| per image ({args.max_side} px, jax "
        f"{jax.__version__}, {cpu.get('model name', platform.machine())}, "
        f"{os.cpu_count()} cores, affinity {len(os.sched_getaffinity(0))})")
  print(f"{'run':<11}" + "".join(f"{i:>9}" for i in range(len(images))))
  for name, errors in rows.items():
    print(f"{name:<11}" + "".join(f"{e:9.1e}" for e in errors))
  payload = {"jax": jax.__version__, "jaxlib": jax.lib.__version__,
             "machine": platform.processor() or platform.machine(),
             "cpu": cpu, "images": args.images, "max_side": args.max_side,
             "cores": os.cpu_count(),
             "affinity": len(os.sched_getaffinity(0)),
             "xla_flags": os.environ.get("XLA_FLAGS", ""),
             "max_abs_error_per_image": rows, "seconds": seconds}
  path = pathlib.Path(args.json)
  path.parent.mkdir(parents=True, exist_ok=True)
  sr_jax.files.atomic_write(path, (json.dumps(payload, indent=1) + "\n").encode())
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
