"""Trains the bundled demo model, `demo_vgg`, on the synthetic flowers.

  python -m sr_jax.scripts.train_demo                 # the bundled weights
  python -m sr_jax.scripts.train_demo --steps=200 --out=/tmp/demo.safetensors
  python -m sr_jax.scripts.train_demo --arch=demo_resnet \
      --out=weights/demo_resnet.safetensors   # the second demo architecture

Writes the weights with their provenance (classes, seeds, test accuracy,
steps, this command) and records their sha256 in `MANIFEST` beside them. The
logic is in `sr_jax.train`.
"""

from __future__ import annotations

import shlex
import sys

from absl import flags

from sr_jax.scripts import _app

FLAGS = flags.FLAGS
# None: `sr_jax.train.TrainConfig`'s default, the one the bundled file used.
flags.DEFINE_string("arch", None, "Architecture to train (default demo_vgg).")
flags.DEFINE_string("variant", None,
                    "Dataset variant: 'double' (default) or 'single'.")
flags.DEFINE_float("part_loss", None,
                   "Weight of the auxiliary part-hue losses (0: none).")
flags.DEFINE_integer("steps", None, "Optimisation steps.")
flags.DEFINE_integer("batch_size", None, "Images per step.")
flags.DEFINE_float("learning_rate", None, "Peak learning rate.")
flags.DEFINE_integer("train_seed", None, "Dataset seed of the training images.")
flags.DEFINE_integer("eval_seed", None,
                     "Dataset seed of the held-out test images.")
flags.DEFINE_integer("eval_count", None, "Number of test images.")
flags.DEFINE_integer("init_seed", None, "PRNG seed of the initial parameters.")
flags.DEFINE_integer("log_every", None, "Steps between progress lines.")
flags.DEFINE_string("out", "weights/demo_vgg.safetensors",
                    "Weight file to write; MANIFEST beside it gets its sha256.")
_CONFIG_FLAGS = ("arch", "variant", "part_loss", "steps", "batch_size",
                 "learning_rate", "train_seed", "eval_seed", "eval_count",
                 "init_seed", "log_every")


def run(argv) -> int:
  """Trains with the flags' configuration and writes the weights."""
  del argv  # `_app.call` refuses positional arguments
  # Imported here so that --help is fast.
  from sr_jax import train  # pylint: disable=import-outside-toplevel
  config = train.TrainConfig(**{
      name: FLAGS[name].value for name in _CONFIG_FLAGS
      if FLAGS[name].value is not None})
  command = shlex.join(["python", "-m", "sr_jax.scripts.train_demo",
                        *sys.argv[1:]])
  result = train.train(config)
  digest = train.save_weights(result, FLAGS.out, command=command)
  print(f"wrote {FLAGS.out} (sha256 {digest}); test accuracy "
        f"{result.accuracy:.4f}")
  return 0


def main() -> None:
  """Console-script entry point (`sr-jax-train-demo`)."""
  _app.run(run)


if __name__ == "__main__":
  main()
