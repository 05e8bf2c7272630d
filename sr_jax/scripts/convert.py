r"""Converts PyTorch weights (torchvision, timm, vgg_face_dag) to sr_jax files.

    python -m sr_jax.scripts.convert --arch=vgg16 \
        --src=vgg16-397923af.pth --dst=weights/vgg16.safetensors

Also installed as `sr-jax-convert`. The logic is `sr_jax.weights.convert_file`;
see weights/README.md for where to get the source files.
"""

from __future__ import annotations

from absl import flags

from sr_jax.scripts import _app

FLAGS = flags.FLAGS
flags.DEFINE_string("arch", None,
                    "Target architecture, e.g. vgg16, alexnet, vgg_face.")
flags.DEFINE_string("src", None,
                    "Source state dict: .pth (needs torch) or .safetensors.")
flags.DEFINE_string("dst", None, "Destination .safetensors file.")
flags.DEFINE_string("layout", None,
                    "Source layout: torchvision, timm or vgg_face_dag "
                    "(sr_jax.weights.LAYOUTS); guessed from the tensor names "
                    "when not given.")
flags.mark_flags_as_required(["arch", "src", "dst"])


def run(argv) -> int:
  """Converts --src into --dst and prints what it wrote."""
  del argv  # `_app.call` refuses positional arguments
  from sr_jax import weights  # pylint: disable=import-outside-toplevel
  path = weights.convert_file(FLAGS.src, FLAGS.dst, arch=FLAGS.arch,
                              layout=FLAGS.layout)
  meta = weights.read_metadata(path)
  print(f"Wrote {path} (arch={meta['arch']}, layout={meta['source_layout']}, "
        f"source sha256={meta['source_sha256']}).")
  return 0


def main() -> None:
  """Console-script entry point (`sr-jax-convert`)."""
  _app.run(run)


if __name__ == "__main__":
  main()
