r"""Relevant features of a model on the synthetic flowers (Oramas et al.,
ICLR 2019): selection, interpretation and explanations.

  python -m sr_jax.scripts.relevant_features --model=demo_vgg --mu=5 \
      --out=out/relevant_features

Fits each class's relevant features (the mu-lasso over the pooled responses
of every conv and ReLU output) on the first --count images of the synthetic
training split, then writes to --out: `relevant_features.safetensors` (the
fitted selection), `class_<k>.png` (each class's average visualisations),
`explanations.png` (--explain held-out demo images, explained by their
class's top 3 features), `relevant_features.png` (both in one figure) and
`relevant_features.json` (the selected features). The logic is in
`sr_jax.interpret.feature_report`.
"""

from __future__ import annotations

from absl import flags

from sr_jax.scripts import _app

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "demo_vgg", "Architecture (a model of the "
                    "synthetic flowers).")
flags.DEFINE_string("weights", None,
                    "safetensors weight file; default: the model's bundled "
                    "weights.")
flags.DEFINE_float("mu", 5.0, "L1 radius of each class's weights (> 0).")
flags.DEFINE_integer("count", 400, "Training images to fit on.")
flags.DEFINE_list("layers", None, "Comma-separated tap names; default: every "
                  "conv and ReLU output.")
flags.DEFINE_integer("top", 16, "Images averaged per feature visualisation.")
flags.DEFINE_integer("explain", 4, "Held-out demo images to explain.")
flags.DEFINE_enum("backprop", "guided_backprop",
                  ["guided_backprop", "deconvnet"],
                  "How a feature's activation map is back-projected.")
flags.DEFINE_string("out", "out/relevant_features", "Output folder.")


def run(argv) -> int:
  del argv  # `_app.call` refuses positional arguments
  # Imported here so that --help is fast.
  from sr_jax.interpret.feature_report import save_relevant_features  # pylint: disable=import-outside-toplevel
  paths = save_relevant_features(
      FLAGS.model, FLAGS.out, mu=FLAGS.mu, count=FLAGS.count,
      weights=FLAGS.weights, layers=FLAGS.layers, top=FLAGS.top,
      explain_count=FLAGS.explain, backprop=FLAGS.backprop)
  print(f"wrote {len(paths)} files to {FLAGS.out} ({paths[-1].name}, "
        f"{paths[0].name}, ...)")
  return 0


def main() -> None:
  """Console-script entry point (`sr-jax-relevant-features`)."""
  _app.run(run)


if __name__ == "__main__":
  main()
