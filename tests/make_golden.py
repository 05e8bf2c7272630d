"""Regenerates tests/golden/: reference logits computed by PyTorch.

    python -m tests.make_golden        # from the repository root; needs torch

The goldens let the parity tests run where torch is absent. Each holds the
input, the logits the plain-torch reference model (tests/reference) computed,
and what is needed to rebuild the very weights torch used:

* `vgg_tiny.safetensors` + `vgg_tiny.npz`: the tiny VGG's torch weights,
  converted to our format (tens of kB), with inputs at 32x32 and 37x45.
* `alexnet_67.npz`: AlexNet at 67x67 (its smallest sizes exercise the
  adaptive pool's repeated bins, 1 -> 6). Its 61M weights are not stored; they
  come from `synthetic_state_dict`, a counter-based generator (SplitMix64 on
  the element index) that is pure integer arithmetic, so NumPy rebuilds them
  bit for bit on any platform without torch. The file records the state-dict
  names and shapes, and a fingerprint of the generated values.
"""

from __future__ import annotations

import os
import pathlib
import tempfile

import numpy as np

GOLDEN = pathlib.Path(__file__).resolve().parent / "golden"
ALEXNET_SEED = 20150101
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_GOLDEN_RATIO = np.uint64(0x9E3779B97F4A7C15)


def splitmix_uniform(seed: int, size: int) -> np.ndarray:
  """`size` floats in [-1, 1) from SplitMix64 (Steele et al. 2014) of a counter.

  Element i is a fixed function of (seed, i): no RNG state, no version drift.
  """
  out = np.empty(size, np.float32)
  step = 1 << 22
  for start in range(0, size, step):
    i = np.arange(start, min(size, start + step), dtype=np.uint64)
    z = (i + np.uint64(seed)) * _GOLDEN_RATIO
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    z ^= z >> np.uint64(31)
    u = (z >> np.uint64(11)).astype(np.float64) * 2.0 ** -53
    out[start:start + len(i)] = (2.0 * u - 1.0).astype(np.float32)
  return out


def synthetic_state_dict(shapes: dict[str, tuple[int, ...]],
                         seed: int) -> dict[str, np.ndarray]:
  """Deterministic torchvision-layout weights for the given tensor shapes.

  Weights are uniform in +-1/sqrt(fan_in) (PyTorch's default bound) and biases
  in +-0.1, tensor k drawing from seed + k * 2**40.
  """
  out = {}
  for k, (name, shape) in enumerate(shapes.items()):
    shape = tuple(int(s) for s in shape)
    u = splitmix_uniform(seed + k * 2 ** 40, int(np.prod(shape)))
    bound = 0.1 if len(shape) == 1 else 1.0 / np.sqrt(np.prod(shape[1:]))
    out[name] = (u * np.float32(bound)).reshape(shape)
  return out


def fingerprint(state_dict: dict[str, np.ndarray]) -> np.ndarray:
  """Float64 sums and first elements of every tensor, to detect any drift."""
  return np.array([[np.sum(v, dtype=np.float64), float(v.flat[0])]
                   for v in state_dict.values()])


def _save_npz(path: pathlib.Path, **arrays) -> None:
  fd, tmp = tempfile.mkstemp(suffix=".npz", dir=path.parent)
  with os.fdopen(fd, "wb") as f:
    np.savez_compressed(f, **arrays)
  os.chmod(tmp, 0o644)
  os.replace(tmp, path)


def main() -> None:
  import torch  # pylint: disable=import-outside-toplevel
  from sr_jax import weights  # pylint: disable=import-outside-toplevel
  from tests.reference import torch_models  # pylint: disable=import-outside-toplevel

  GOLDEN.mkdir(exist_ok=True)
  rng = np.random.default_rng(2024)
  # vgg_tiny: its (small) converted weights are stored.
  model = torch_models.build("vgg_tiny", seed=7)
  with tempfile.TemporaryDirectory() as tmp:
    src = os.path.join(tmp, "vgg_tiny.pth")
    torch.save(model.state_dict(), src)
    weights.convert_file(src, GOLDEN / "vgg_tiny.safetensors", arch="vgg_tiny")
  arrays = {}
  for name, hw in (("x32", (32, 32)), ("x37x45", (37, 45))):
    x = rng.standard_normal((2, 3) + hw).astype(np.float32)
    with torch.no_grad():
      arrays[f"logits_{name}"] = model(torch.from_numpy(x)).numpy()
    arrays[name] = x.transpose(0, 2, 3, 1)
  _save_npz(GOLDEN / "vgg_tiny.npz", **arrays)
  # alexnet: weights rebuilt from the counter-based generator.
  model = torch_models.build("alexnet")
  shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
  sd = synthetic_state_dict(shapes, ALEXNET_SEED)
  model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
  x = rng.standard_normal((1, 3, 67, 67)).astype(np.float32)
  with torch.no_grad():
    logits = model(torch.from_numpy(x)).numpy()
  _save_npz(GOLDEN / "alexnet_67.npz", x=x.transpose(0, 2, 3, 1),
            logits=logits, names=np.array(list(shapes)),
            shapes=np.array([list(s) + [0] * (4 - len(s))
                             for s in shapes.values()]),
            seed=np.int64(ALEXNET_SEED), fingerprint=fingerprint(sd))
  print(f"Wrote {sorted(p.name for p in GOLDEN.iterdir())} to {GOLDEN}.")


if __name__ == "__main__":
  main()
