"""sr_jax: Salient Relevance maps and related explanations for image classifiers.

The curated public API; see README.md for a tour.
"""

from sr_jax import models
from sr_jax.classes import imagenet_classes
from sr_jax.models import load_model, preprocess

__version__ = "0.1.0"

__all__ = [
    "imagenet_classes",
    "load_model",
    "models",
    "preprocess",
]
