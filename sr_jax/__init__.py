"""sr_jax: Salient Relevance maps and related explanations for image classifiers.

The curated public API; see README.md for a tour.
"""

# Before anything creates a JAX array: XLA flags only act before JAX starts.
from sr_jax import runtime as _runtime

_runtime.tune_from_env()

# pylint: disable=wrong-import-position
from sr_jax import attribution
from sr_jax import io
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
    "imagenet_classes",
    "io",
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
