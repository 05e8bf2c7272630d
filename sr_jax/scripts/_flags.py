"""Flags shared by the `explain` and `batch` apps (defined once, here)."""

from absl import flags

# The modes of `sr_jax.sr.relevance_to_image`, written out so that `--help`
# does not import JAX; tests/test_sr.py checks they agree.
RELEVANCE_IMAGES = ("abs_rgb", "sum_abs", "positive")


def define_explanation_flags() -> None:
  """--method, --method_options, --composite, --relevance_image and
  --saliency_options."""
  flags.DEFINE_string("method", "lrp",
                      "Attribution method whose map the SR step explains "
                      "(a name in sr_jax.attribution.METHODS).")
  flags.DEFINE_string("method_options", "{}",
                      "JSON object of the method's options, e.g. "
                      "'{\"layer\": \"features_28\"}'.")
  flags.DEFINE_string("composite", "sr_paper",
                      "LRP composite (with --method=lrp; the alias of "
                      "--method_options='{\"composite\": ...}').")
  flags.DEFINE_enum("relevance_image", "abs_rgb", list(RELEVANCE_IMAGES),
                    "How relevance becomes the SR step's image.")
  flags.DEFINE_string("saliency_options", "{}",
                      "JSON object of context-aware saliency options, e.g. "
                      "'{\"max_side\": null, \"k\": 32}'.")


def define_arch_flag(default) -> None:
  """--arch, with --model kept as its alias."""
  flags.DEFINE_string("arch", default, "Architecture (sr_jax.models.ARCHS).")
  flags.DEFINE_alias("model", "arch")


def sr_options(values) -> dict:
  """The SR keyword options (`sr_jax.sr.SRConfig.make`) from the flags."""
  import json  # pylint: disable=import-outside-toplevel
  opts = {}
  for name in ("method_options", "saliency_options"):
    text = getattr(values, name)
    try:
      parsed = json.loads(text)
    except json.JSONDecodeError as e:
      raise ValueError(f"`--{name}` (={text!r}) is not JSON: {e}.") from e
    if not isinstance(parsed, dict):
      raise ValueError(f"`--{name}` (={text!r}) must be a JSON object.")
    opts[name] = parsed
  composite = values.composite if values.method == "lrp" else None
  return dict(method=values.method, composite=composite,
              relevance_image=values.relevance_image, **opts)
