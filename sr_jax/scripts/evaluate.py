r"""Scores every explanation method against every measure; resumable.

  python -m sr_jax.scripts.evaluate --model=demo_vgg --n=500 --methods=all \
      --out=results/
  python -m sr_jax.scripts.evaluate --model=vgg16 \
      --weights=weights/vgg16.safetensors --images=photos/ --masks=masks/ \
      --out=results_vgg16/

The first form runs on held-out synthetic flowers (`EVALUATION_SEED`); the
second on your images with same-named mask PNGs (non-zero = the object).
Writes `results.jsonl` (one line per method and image; a re-run finishes
what is missing), `results.json`, `results.md`, `evaluation.png` and
`evaluation_gallery.png` into `--out`. The logic is in `sr_jax.evaluation`.
"""

from __future__ import annotations

import sys

from absl import flags

from sr_jax.scripts import _app

FLAGS = flags.FLAGS
flags.DEFINE_string("out", None, "Output folder.")
flags.DEFINE_string("model", "demo_vgg", "Architecture.")
flags.DEFINE_string("weights", None,
                    "safetensors weight file; default: the model's bundled "
                    "weights, else random weights.")
flags.DEFINE_string("images", None,
                    "Folder of your images (with --masks); default: the "
                    "held-out synthetic flowers.")
flags.DEFINE_string("masks", None,
                    "Folder of the images' masks, same names, PNG.")
flags.DEFINE_integer("n", 500, "Number of images (the first n).",
                     lower_bound=1)
flags.DEFINE_string("methods", "all",
                    "'all' or comma-separated variants: method names, "
                    "sr:<method>, meta:<method>, smooth:<method>, random.")
flags.DEFINE_integer("seed", None,
                     "Synthetic dataset seed; default: the held-out "
                     "EVALUATION_SEED.")
flags.DEFINE_integer("single_n", 100,
                     "Images of the one-part ('single') An8Flower stage "
                     "(0: none).", lower_bound=0)
flags.DEFINE_integer("sanity_n", 10,
                     "Images for class sensitivity and randomisation.",
                     lower_bound=0)
flags.DEFINE_integer("batch_size", 32, "Images per batch.", lower_bound=1)
flags.DEFINE_integer("steps", 16, "Region perturbation steps.", lower_bound=1)
flags.DEFINE_integer("patch", None,
                     "Region side in pixels; default: 1/8 of the image.",
                     lower_bound=1)
flags.DEFINE_string("baseline", "mean",
                    "What perturbed regions get: 'mean', 'zero' or a number.")
flags.DEFINE_integer("bootstrap_seed", 0, "Seed of the bootstrap resamples.")
flags.DEFINE_bool("figures", True, "Draw the figures.")
flags.mark_flags_as_required(["out"])


def _baseline(text: str):
  try:
    return float(text)
  except ValueError:
    return text


def run(argv) -> int:
  """Runs the evaluation with the flags' settings."""
  del argv  # `_app.call` refuses positional arguments
  # Imported here so that --help is fast.
  from sr_jax import evaluation  # pylint: disable=import-outside-toplevel
  from sr_jax.data import synthetic  # pylint: disable=import-outside-toplevel
  protocol = evaluation.Protocol(
      baseline=_baseline(FLAGS.baseline), patch=FLAGS.patch,
      steps=FLAGS.steps, sanity_n=FLAGS.sanity_n,
      batch_size=FLAGS.batch_size, bootstrap_seed=FLAGS.bootstrap_seed)
  try:
    summary = evaluation.evaluate(
        FLAGS.out, model=FLAGS.model, weights=FLAGS.weights,
        images=FLAGS.images, masks=FLAGS.masks, n=FLAGS.n,
        methods=FLAGS.methods,
        seed=synthetic.EVALUATION_SEED if FLAGS.seed is None else FLAGS.seed,
        single_n=FLAGS.single_n, protocol=protocol, figures=FLAGS.figures,
        stream=sys.stderr)
  except RuntimeError as e:  # Another run holds --out.
    print(f"error: {_app.one_line(e)}", file=sys.stderr)
    return 2
  print(summary)
  return 0


def main() -> None:
  """Console-script entry point (`sr-jax-evaluate`)."""
  _app.run(run)


if __name__ == "__main__":
  main()
