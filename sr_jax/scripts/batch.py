r"""Explains every image of a folder (or glob) with SR maps; resumable.

  python -m sr_jax.scripts.batch --input=photos --out=out --model=vgg16 \
      --weights=weights/vgg16.safetensors --batch_size=8

Writes `<name>.npz` and `<name>.png` per image, `results.jsonl`,
`failures.jsonl` and the report `index.html`; a re-run skips what is done
(see `sr_jax.runner`). The exit status is 1 when any image failed.

On many hosts, start one process per host (srun, mpirun) with
`--distributed` (JAX reads SLURM, Open MPI and TPU environments), or give
`--coordinator_address`, `--num_processes` and `--process_id` yourself; every
process takes its share of the files into the same, shared `--out`:

  python -m sr_jax.scripts.batch --input=photos --out=out \
      --coordinator_address=10.0.0.1:1234 --num_processes=2 --process_id=0
"""

from __future__ import annotations

import sys

from absl import flags

from sr_jax.scripts import _app, _flags

FLAGS = flags.FLAGS
flags.DEFINE_string("input", None, "Folder of images, or a glob pattern.")
flags.DEFINE_string("out", None, "Output folder.")
_flags.define_arch_flag("vgg16")
flags.DEFINE_string("weights", None,
                    "safetensors weight file; default: the model's bundled "
                    "weights, else random weights.")
flags.DEFINE_integer("batch_size", 8, "Images per batch and device.",
                     lower_bound=1)
flags.DEFINE_integer("num_devices", 0,
                     "Devices to shard each batch over (jax.local_devices(); "
                     "0: all of them; on CPU one per core unless "
                     "SR_JAX_CPU_DEVICES says otherwise, see sr_jax.runtime).",
                     lower_bound=0)
_flags.define_explanation_flags()
flags.adopt_module_key_flags(_flags)
flags.DEFINE_bool("retry_failed", False,
                  "Retry images an earlier run recorded as failed.")
flags.DEFINE_bool("distributed", False,
                  "Start jax.distributed, reading the cluster's environment "
                  "(SLURM, Open MPI, TPU) for what the three flags below "
                  "leave out.")
flags.DEFINE_string("coordinator_address", None,
                    "host:port of process 0, for jax.distributed.")
flags.DEFINE_integer("num_processes", None,
                     "Processes of a multi-host run (jax.distributed).",
                     lower_bound=1)
flags.DEFINE_integer("process_id", None,
                     "This process's index in a multi-host run, "
                     "0..num_processes-1.", lower_bound=0)
flags.mark_flags_as_required(["input", "out"])


def run(argv) -> int:
  del argv  # `_app.call` refuses positional arguments
  from sr_jax import runner  # pylint: disable=import-outside-toplevel
  try:
    runner.initialize(coordinator_address=FLAGS.coordinator_address,
                      num_processes=FLAGS.num_processes,
                      process_id=FLAGS.process_id, auto=FLAGS.distributed)
    summary = runner.run(
        FLAGS.input, FLAGS.out, arch=FLAGS.arch, weights=FLAGS.weights,
        batch_size=FLAGS.batch_size, num_devices=FLAGS.num_devices or None,
        retry_failed=FLAGS.retry_failed, stream=sys.stderr,
        **_flags.sr_options(FLAGS))
  except RuntimeError as e:  # A busy --out (ValueErrors: see _app).
    print(f"error: {_app.one_line(e)}", file=sys.stderr)
    return 2
  if runner.hosts.process()[0] == 0:
    print(summary)  # One summary line per run, for the whole run.
  return 1 if summary.failed else 0


def main() -> None:
  """Console-script entry point (`sr-jax-batch`)."""
  _app.run(run)


if __name__ == "__main__":
  main()
