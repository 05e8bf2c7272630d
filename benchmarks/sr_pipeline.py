"""How long does an SR map take? VGG-16 at 224x224, per stage and in a batch.

  python benchmarks/sr_pipeline.py --reps=3

Times one image through the pipeline, stage by stage (after a warm-up call
that compiles everything): preprocess (resize, crop, normalize), LRP
(`sr_paper` composite, with the relevance image), context-aware saliency of
the relevance image (the SR map), saliency of the image, and the pictures
(Canny edges and the panel). Then times the batch runner (`sr_jax.runner.run`)
at `--batch_size` per device on `--num_devices` devices (default all that
JAX sees: one CPU device per core unless `SR_JAX_CPU_DEVICES` says) on a
folder of `--batch_images` images, after a warm-up run that compiles.
Random weights: the timing does not depend on them. Prints a table (median
over `--reps`) and writes `benchmarks/results/sr_pipeline.json`.
"""

from __future__ import annotations

import io as pyio
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
from absl import app, flags
from PIL import Image

import sr_jax
from sr_jax import files, runner, sr, viz
from sr_jax.data import synthetic

FLAGS = flags.FLAGS
flags.DEFINE_integer("reps", 3, "Timed repetitions of the single-image run.")
flags.DEFINE_string("model", "vgg16", "Architecture.")
flags.DEFINE_integer("batch_size", 8, "Batch size of the batch-runner timing.")
flags.DEFINE_integer("num_devices", 0,
                     "Devices of the batch-runner timing (0: all).")
flags.DEFINE_integer("batch_images", 16,
                     "Images in the batch-runner timing (0 skips it).")
flags.DEFINE_string("saliency_options", "{}",
                    "JSON object of context-aware saliency options.")
flags.DEFINE_string("json", str(Path(__file__).parent / "results" /
                                "sr_pipeline.json"), "Where the JSON goes.")

STAGES = ("preprocess", "lrp", "saliency_relevance", "saliency_image",
          "pictures")


def _options() -> dict:
  return runner.parse_options(FLAGS.saliency_options)


def single_image(model, variables, image) -> dict[str, float]:
  """Seconds of each stage for one image, and the whole."""
  timings: dict[str, float] = {}
  start = time.perf_counter()
  crop = sr.prepare(image, arch=FLAGS.model)
  timings["prepare"] = time.perf_counter() - start
  [result] = sr.explain_crops(model, variables, crop[None], arch=FLAGS.model,
                              saliency_options=_options(), timings=timings)
  t = time.perf_counter()
  viz.panel(result.image, result, class_names=sr_jax.imagenet_classes())
  timings["panel"] = time.perf_counter() - t
  whole = time.perf_counter() - start
  return {"preprocess": timings["prepare"] + timings["preprocess"],
          "lrp": timings["lrp"],
          "saliency_relevance": timings["saliency_relevance"],
          "saliency_image": timings["saliency_image"],
          "pictures": timings["edges"] + timings["panel"], "whole": whole}


def batch_run(model, variables, images: list[np.ndarray]) -> dict[str, float]:
  """images/s of `sr_jax.runner.run` on a folder, compiled beforehand (the
  model is loaded once, outside the timing)."""
  with tempfile.TemporaryDirectory() as tmp:
    folder = Path(tmp) / "in"
    folder.mkdir()
    for i, image in enumerate(images):
      Image.fromarray(image).save(folder / f"{i:03d}.png")
    # The runner's own explainer, with the model loaded once.
    mesh = runner.make_mesh(FLAGS.num_devices or None)
    devices = 1 if mesh is None else mesh.size
    explain = runner.make_explainer(
        model, variables, arch=FLAGS.model, composite="sr_paper",
        relevance_image="abs_rgb", saliency_options=_options(), mesh=mesh)
    args = dict(model=FLAGS.model, batch_size=FLAGS.batch_size,
                num_devices=devices, saliency_options=_options(),
                explain_fn=explain, stream=pyio.StringIO())
    runner.run(str(folder / "000.png"), str(Path(tmp) / "warm"), **args)
    start = time.perf_counter()
    summary = runner.run(str(folder), str(Path(tmp) / "out"), **args)
    seconds = time.perf_counter() - start
  assert summary.done == len(images), summary
  return {"images": len(images), "batch_size": FLAGS.batch_size,
          "num_devices": devices,
          "seconds": seconds, "images_per_s": len(images) / seconds}


def main(argv) -> None:
  del argv
  model, variables = sr_jax.load_model(FLAGS.model, key=jax.random.PRNGKey(0))
  image = synthetic.sample_image(size=256)
  t = time.perf_counter()
  single_image(model, variables, image)
  compile_s = time.perf_counter() - t
  runs = [single_image(model, variables, image) for _ in range(FLAGS.reps)]
  per_stage = {k: statistics.median(r[k] for r in runs)
               for k in STAGES + ("whole",)}
  print(f"{FLAGS.model} at 224x224 on {jax.devices()[0].platform}, "
        f"median of {FLAGS.reps} (first call with compilation: "
        f"{compile_s:.1f} s)")
  print(f"{'stage':<20} {'s/image':>8}")
  for k, v in per_stage.items():
    print(f"{k:<20} {v:8.3f}")
  report = {"model": FLAGS.model, "input": "224x224", "reps": FLAGS.reps,
            "saliency_options": _options(),
            "seconds_per_image": per_stage, "first_call_s": compile_s,
            "runs": runs, "machine": {
                "platform": platform.platform(), "cpus": os.cpu_count(),
                "load_average": os.getloadavg(),
                "jax": jax.__version__,
                "devices": [str(d) for d in jax.devices()]}}
  if FLAGS.batch_images:
    images = [synthetic.sample_image(index=i, size=256)
              for i in range(FLAGS.batch_images)]
    report["batch"] = batch_run(model, variables, images)
    b = report["batch"]
    print(f"batch runner: {b['images']} images at batch {b['batch_size']} "
          f"per device on {b['num_devices']}: "
          f"{b['images_per_s']:.3f} images/s ({b['seconds']:.1f} s)")
  Path(FLAGS.json).parent.mkdir(parents=True, exist_ok=True)
  files.atomic_write(FLAGS.json, (json.dumps(report, indent=1) + "\n").encode())
  print(f"wrote {FLAGS.json}")


if __name__ == "__main__":
  app.run(main)
