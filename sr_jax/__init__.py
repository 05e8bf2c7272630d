"""sr_jax: Salient Relevance maps and related explanations for image classifiers.

The curated public API; see README.md for a tour.
"""

# The one import-time hook, before anything imports JAX or creates an array:
# glibc's malloc settings and XLA's flags only act before JAX starts.
from sr_jax import runtime as _runtime

_runtime.tune_from_env()

# pylint: disable=wrong-import-position
from sr_jax import attribution
from sr_jax import files
from sr_jax import lrp
from sr_jax import metrics
from sr_jax import models
from sr_jax import saliency
from sr_jax import viz
from sr_jax import weights
from sr_jax.classes import imagenet_classes
from sr_jax import runtime
from sr_jax.models import load_model, preprocess
from sr_jax.sr import SRResult, sr_map, sr_map_batch

__version__ = "0.1.0"

__all__ = [
    "SRResult",
    "attribution",
    "files",
    "imagenet_classes",
    "load_model",
    "lrp",
    "metrics",
    "models",
    "preprocess",
    "runtime",
    "saliency",
    "sr_map",
    "sr_map_batch",
    "viz",
    "weights",
]


def __getattr__(name: str):
  if name == "io":  # the deprecated old name of `files`: warns on import
    import sr_jax.io  # pylint: disable=import-outside-toplevel
    return sr_jax.io
  raise AttributeError(f"module 'sr_jax' has no attribute {name!r}")
