r"""Class-model visualisation: one image per class, and a grid of them.

  python -m sr_jax.scripts.class_model --model=demo_vgg --classes=all \
      --out=out/class_models
  python -m sr_jax.scripts.class_model --classes=0,3 --steps=50 --out=out

Writes `class_<k>.png` per class and `class_models.png` (titled with the
class names) to `--out`. The defaults are the regularised settings that
give recognisable class models of the demo model (each classified as its
class): a noise start, 300 steps of length 5 along the normalized gradient,
a random shift of up to 4 pixels per step, a blur (sigma 0.5) every 10 steps
and clipping to the valid input range. The plain version of Simonyan et al.
(2014) is `--init=zero --jitter=0 --blur_every=0 --nonormalize_grad
--noclip --lr=...`; for the demo model it stays near the mean image for
most classes.
The logic is in `sr_jax.interpret.class_models`.
"""

from __future__ import annotations

import sys

from absl import flags

from sr_jax.scripts import _app

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "demo_vgg", "Architecture.")
flags.DEFINE_string("weights", None,
                    "safetensors weight file; default: the model's bundled "
                    "weights, else random weights.")
flags.DEFINE_string("classes", "all",
                    "`all`, or comma-separated class indices, e.g. `0,3,5`.")
flags.DEFINE_string("out", "out/class_models", "Output folder.")
flags.DEFINE_integer("steps", 300, "Ascent steps per class.")
flags.DEFINE_float("l2", 1e-3, "Weight of the L2 penalty on the image.")
flags.DEFINE_float("lr", 5.0, "Learning rate of the gradient ascent (with "
                   "--normalize_grad: the L2 length of each step).")
flags.DEFINE_enum("init", "noise", ["noise", "zero"],
                  "Start from noise (seeded by --seed) or the zero image.")
flags.DEFINE_integer("seed", 0, "PRNG seed of the noise start (and then of "
                     "the jitter).")
flags.DEFINE_integer("jitter", 4, "Largest random shift per step (pixels).")
flags.DEFINE_integer("blur_every", 10, "Blur after every n-th step (0: off).")
flags.DEFINE_float("blur_sigma", 0.5, "Standard deviation of the blur.")
flags.DEFINE_bool("clip", True, "Clip to the valid input range each step.")
flags.DEFINE_bool("normalize_grad", True,
                  "Step along the L2-normalized gradient.")


def parse_classes(text: str):
  """None for `all`, else the list of indices; a ValueError names the flag."""
  if text.strip() == "all":
    return None
  try:
    return [int(part) for part in text.split(",")]
  except ValueError:
    raise ValueError(f"--classes={text!r} must be `all` or comma-separated "
                     "integers such as `0,3,5`.") from None


def run(argv) -> int:
  del argv  # `_app.call` refuses positional arguments
  # Imported here so that --help is fast.
  import jax  # pylint: disable=import-outside-toplevel
  from sr_jax.interpret.class_models import save_class_models  # pylint: disable=import-outside-toplevel
  try:
    paths = save_class_models(
        FLAGS.model, FLAGS.out, classes=parse_classes(FLAGS.classes),
        weights=FLAGS.weights, steps=FLAGS.steps, l2=FLAGS.l2,
        learning_rate=FLAGS.lr, jitter=FLAGS.jitter,
        key=jax.random.PRNGKey(FLAGS.seed) if FLAGS.init == "noise" else None,
        blur_every=FLAGS.blur_every, blur_sigma=FLAGS.blur_sigma,
        clip=True if FLAGS.clip else None,
        normalize_grad=FLAGS.normalize_grad)
  except (ValueError, FileNotFoundError) as e:  # Bad flag values or files.
    print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
    return 2
  print(f"wrote {len(paths) - 1} class models and the grid {paths[-1]}")
  return 0


def main() -> None:
  """Console-script entry point (`sr-jax-class-model`)."""
  _app.run(run)


if __name__ == "__main__":
  main()
