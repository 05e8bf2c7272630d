r"""Explains one image with an SR map: a panel PNG, an .npz, the top 5.

  python -m sr_jax.scripts.explain --image=cat.jpg --model=vgg16 \
      --weights=weights/vgg16.safetensors --out=out
  python -m sr_jax.scripts.explain --sample --out=out   # no file needed

`--sample` (or `--image=sample`) explains a demo image from
`sr_jax.data.synthetic` with the demo model (`--model` defaults to demo_vgg
then). Without `--weights` the weights shipped for the model are used, or
random ones if there are none. The logic is in `sr_jax.batch.explain_one`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from absl import app, flags

from sr_jax.scripts import _flags

FLAGS = flags.FLAGS
flags.DEFINE_string("image", None, "Image file to explain, or `sample`.")
flags.DEFINE_bool("sample", False,
                  "Explain demo image `--sample_index` of sr_jax.data.synthetic.")
flags.DEFINE_integer("sample_index", 0, "Which demo image `--sample` uses.")
flags.DEFINE_string("model", "vgg16",
                    "Architecture (demo_vgg by default with --sample).")
flags.DEFINE_string("weights", None,
                    "safetensors weight file; default: the model's bundled "
                    "weights, else random weights.")
flags.DEFINE_integer("target", None, "Class to explain; default: top class.")
_flags.define_explanation_flags()
flags.adopt_module_key_flags(_flags)
flags.DEFINE_string("out", "out", "Output folder.")


def run(argv) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not (FLAGS.sample or FLAGS.image):
    raise app.UsageError("Give --image=FILE, or --sample.")
  # Imported here so that --help is fast.
  from sr_jax import batch, io, sr  # pylint: disable=import-outside-toplevel
  from sr_jax.classes import label  # pylint: disable=import-outside-toplevel
  from sr_jax.data import synthetic  # pylint: disable=import-outside-toplevel
  model, true_label = FLAGS.model, None
  if FLAGS.weights is not None and not Path(FLAGS.weights).is_file():
    print(f"error: --weights={FLAGS.weights!r} is not a file; give a "
          "safetensors weights file for --model, or leave --weights out.",
          file=sys.stderr)
    return 2
  try:
    if FLAGS.sample or FLAGS.image == "sample":
      image, true_label, _ = synthetic.sample(synthetic.SAMPLE_SEED,
                                              FLAGS.sample_index)
      name = f"sample{FLAGS.sample_index}"
      model = model if FLAGS["model"].present else "demo_vgg"
    else:
      image, name = io.load_image(FLAGS.image), Path(FLAGS.image).name
    result, names = batch.explain_one(
        image, FLAGS.out, name, model=model, weights=FLAGS.weights,
        target=FLAGS.target, composite=FLAGS.composite,
        relevance_image=FLAGS.relevance_image,
        saliency_options=batch.parse_options(FLAGS.saliency_options),
        true_label=true_label)
  except (ValueError, FileNotFoundError) as e:  # Bad file or flag values.
    print(f"error: {e}", file=sys.stderr)
    return 2
  for _, text, prob in sr.top_predictions(result.logits, 5, names):
    print(f"{text} {prob:.2f}")
  print(f"explained {label(result.target, names)}; wrote "
        f"{Path(FLAGS.out) / name}.png and .npz")
  return 0


def main() -> None:
  """Console-script entry point (`sr-jax-explain`)."""
  app.run(run)


if __name__ == "__main__":
  main()
