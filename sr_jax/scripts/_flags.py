"""Flags shared by the `explain` and `batch` apps (defined once, here)."""

from absl import flags

# The modes of `sr_jax.sr.relevance_to_image`, written out so that `--help`
# does not import JAX; tests/test_sr.py checks they agree.
RELEVANCE_IMAGES = ("abs_rgb", "sum_abs", "positive")


def define_explanation_flags() -> None:
  """--composite, --relevance_image and --saliency_options."""
  flags.DEFINE_string("composite", "sr_paper", "LRP composite.")
  flags.DEFINE_enum("relevance_image", "abs_rgb", list(RELEVANCE_IMAGES),
                    "How relevance becomes the SR step's image.")
  flags.DEFINE_string("saliency_options", "{}",
                      "JSON object of context-aware saliency options, e.g. "
                      "'{\"max_side\": null, \"k\": 32}'.")
