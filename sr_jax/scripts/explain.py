r"""Explains one image with an SR map: a panel PNG, an .npz, the top 5.

  python -m sr_jax.scripts.explain --image=cat.jpg --model=vgg16 \
      --weights=weights/vgg16.safetensors --out=out
  python -m sr_jax.scripts.explain --sample --out=out   # no file needed

`--sample` (or `--image=sample`) explains a demo image from
`sr_jax.data.synthetic` with the demo model (`--model` defaults to demo_vgg
then). Without `--weights` the weights shipped for the model are used, or
random ones if there are none. The logic is in `sr_jax.explain.explain`.
"""

from __future__ import annotations

from absl import app, flags

from sr_jax.scripts import _app, _flags

FLAGS = flags.FLAGS
flags.DEFINE_string("image", None, "Image file to explain, or `sample`.")
flags.DEFINE_bool("sample", False,
                  "Explain demo image `--sample_index` of sr_jax.data.synthetic.")
flags.DEFINE_integer("sample_index", 0, "Which demo image `--sample` uses.")
_flags.define_arch_flag(None)  # default: vgg16, or demo_vgg with --sample
flags.DEFINE_string("weights", None,
                    "safetensors weight file; default: the model's bundled "
                    "weights, else random weights.")
flags.DEFINE_integer("target", None, "Class to explain; default: top class.")
_flags.define_explanation_flags()
flags.adopt_module_key_flags(_flags)
flags.DEFINE_string("out", "out", "Output folder.")


def run(argv) -> int:
  """Explains --image (or --sample) into --out and prints the top 5."""
  del argv  # `_app.call` refuses positional arguments
  if not (FLAGS.sample or FLAGS.image):
    raise app.UsageError("Give --image=FILE, or --sample.")
  # Imported here so that --help is fast.
  from sr_jax import explain  # pylint: disable=import-outside-toplevel
  done = explain.explain(
      explain.SAMPLE if FLAGS.sample else FLAGS.image, FLAGS.out,
      arch=FLAGS.arch, weights=FLAGS.weights, target=FLAGS.target,
      sample_index=FLAGS.sample_index, **_flags.sr_options(FLAGS))
  print("\n".join(explain.report(done)))
  return 0


def main() -> None:
  """Console-script entry point (`sr-jax-explain`)."""
  _app.run(run)


if __name__ == "__main__":
  main()
