"""Converts PyTorch weights (torchvision, timm, vgg_face_dag) to sr_jax files.

    python -m sr_jax.scripts.convert --arch=vgg16 \
        --src=vgg16-397923af.pth --dst=weights/vgg16.safetensors

Also installed as `sr-jax-convert`. The logic is `sr_jax.weights.convert_file`;
see weights/README.md for where to get the source files.
"""

from absl import app
from absl import flags

from sr_jax import weights

_ARCH = flags.DEFINE_string(
    "arch", None, "Target architecture, e.g. vgg16, alexnet, vgg_face.",
    required=True)
_SRC = flags.DEFINE_string(
    "src", None, "Source state dict: .pth (needs torch) or .safetensors.",
    required=True)
_DST = flags.DEFINE_string("dst", None, "Destination .safetensors file.",
                           required=True)
_LAYOUT = flags.DEFINE_enum(
    "layout", None, list(weights.LAYOUTS),
    "Source layout; guessed from the tensor names when not given.")


def run(argv: list[str]) -> None:
  """Converts --src into --dst and prints what it wrote."""
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  path = weights.convert_file(_SRC.value, _DST.value, arch=_ARCH.value,
                              layout=_LAYOUT.value)
  meta = weights.read_metadata(path)
  print(f"Wrote {path} (arch={meta['arch']}, layout={meta['source_layout']}, "
        f"source sha256={meta['source_sha256']}).")


def main() -> None:
  """Console-script entry point (`sr-jax-convert`)."""
  app.run(run)


if __name__ == "__main__":
  main()
