r"""Compares attribution methods on one image: each method's map and its SR map.

  python -m sr_jax.scripts.compare --image=cat.jpg --methods=all \
      --out=compare.png
  python -m sr_jax.scripts.compare --sample --methods=all \
      --out=docs/compare_methods.png          # the demo model and flower
  python -m sr_jax.scripts.compare --sample --methods=grad_cam,deeplift \
      --out=two.png

One row per method: the map (channel sum of |map|, min-max scaled, as
`sr_jax.metrics.lrp_map`) and its SR map (`sr_jax.sr_map(...,
method=name)`: context-aware saliency of the map), under a first row with
the input and the saliency of the image itself. Every row explains the same
class (`--target`, default the top class). `--sample` uses the demo model
(`demo_vgg`) on demo image `--sample_index` of `sr_jax.data.synthetic`, as
the explain script does. `compare` is the library side.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from absl import app, flags

from sr_jax.scripts import _app

# The methods of `--methods=all`, in the figure's order (smoothgrad gets
# `key=0`, see OPTIONS).
ALL = ("gradient", "input_x_gradient", "smoothgrad", "integrated_gradients",
       "guided_backprop", "deconvnet", "lrp", "grad_cam", "normgrad",
       "normgrad_selective", "normgrad_conv", "linear_approx", "multi_layer",
       "deeplift", "deepshap")
OPTIONS = {"smoothgrad": {"key": 0}}

FLAGS = flags.FLAGS
flags.DEFINE_string("image", None, "Image file to explain.")
flags.DEFINE_bool("sample", False,
                  "Use demo image `--sample_index` and the demo model.")
flags.DEFINE_integer("sample_index", 0, "Which demo image `--sample` uses.")
flags.DEFINE_string("model", None,
                    "Architecture; default: vgg16, or demo_vgg with --sample.")
flags.DEFINE_string("weights", None,
                    "safetensors weight file; default: the model's bundled "
                    "weights, else random weights.")
flags.DEFINE_string("methods", "all",
                    "Comma-separated method names, or `all`: "
                    + ",".join(ALL) + ".")
flags.DEFINE_integer("target", None, "Class to explain; default: top class.")
flags.DEFINE_integer("tile_size", 128, "Side of each tile in pixels.")
flags.DEFINE_string("out", "compare_methods.png", "Output PNG file.")


def parse_methods(text: str) -> tuple[str, ...]:
  """`all` or comma-separated registered names, checked.

  Raises:
    ValueError: for an empty list or an unknown name (the message lists the
      known ones).
  """
  from sr_jax import attribution  # pylint: disable=import-outside-toplevel
  names = ALL if text.strip() == "all" else tuple(
      n.strip() for n in text.split(",") if n.strip())
  if not names:
    raise ValueError(f"`--methods` (={text!r}) names no method; give `all` "
                     "or names separated by commas.")
  for name in names:
    attribution.get_method(name)
  return names


def compare(image: Any, *, arch: str, methods: Sequence[str],
            weights: Optional[str] = None, target: Optional[int] = None,
            tile_size: int = 128, title: Optional[str] = None) -> Any:
  """The comparison figure as a `PIL.Image.Image`.

  Args:
    image: uint8 HxWx3 image (prepared as `arch` wants by `sr_map`).
    arch: the architecture.
    methods: registered method names, one row each.
    weights: a weight file; None: the bundled weights, else random ones.
    target: the class to explain; None: the top class.
    tile_size: the side of each tile.
    title: the heading's first line.

  Returns:
    The figure.
  """
  # pylint: disable=import-outside-toplevel
  from sr_jax import metrics, sr, viz
  from sr_jax.classes import label
  from sr_jax.models import load_model
  from sr_jax.models.loading import resolve_weights
  weights = resolve_weights(arch, weights)
  model, variables = load_model(arch, weights)
  names = sr.class_names(arch, weights)
  first = None
  rows = []
  for name in methods:
    out = sr.sr_map(model, variables, image, arch=arch,
                    target=target if first is None else first.target,
                    method=name, method_options=OPTIONS.get(name),
                    with_image_saliency=first is None)
    if first is None:
      first = out
      rows.append([(["input"], out.image),
                   (["image saliency"], viz.heat(out.image_saliency))])
    rows.append([([name], viz.heat(metrics.lrp_map(out.relevance))),
                 ([f"SR of {name}"], viz.heat(out.sr))])
  heading = [title, f"{arch}: target {label(first.target, names)} "
                    f"(p={first.probability:.2f})"]
  return viz._grid(rows, box=tile_size, title=heading)  # pylint: disable=protected-access


def run(argv) -> int:
  """Draws the figure for --image (or --sample) into --out."""
  del argv  # `_app.call` refuses positional arguments
  if not (FLAGS.sample or FLAGS.image):
    raise app.UsageError("Give --image=FILE, or --sample.")
  # Imported here so that --help is fast.
  from sr_jax import explain, files  # pylint: disable=import-outside-toplevel
  source = explain.SAMPLE if FLAGS.sample else FLAGS.image
  explain.check_weights(FLAGS.weights)
  methods = parse_methods(FLAGS.methods)
  pixels, name, _ = explain.load_input(source,
                                       sample_index=FLAGS.sample_index)
  figure = compare(pixels, arch=explain.default_model(source, FLAGS.model),
                   methods=methods, weights=FLAGS.weights,
                   target=FLAGS.target, tile_size=FLAGS.tile_size,
                   title=name)
  files.save_png(FLAGS.out, figure)
  print(f"Wrote {FLAGS.out} ({len(methods)} methods).")
  return 0


def main() -> None:
  """Console-script entry point."""
  _app.run(run)


if __name__ == "__main__":
  main()
