"""Image saliency: context-aware saliency (Goferman et al.) as a JAX kernel.

`context_aware(image)` gives an HxW map in [0, 1]; `context_aware_batch`
vmaps it over a stack of same-size images. `rgb_to_lab` and
`distance_transform` are the building blocks that may be useful alone.
"""

from sr_jax.saliency.color import rgb_to_lab
from sr_jax.saliency.context_aware import context_aware, context_aware_batch
from sr_jax.saliency.distance_transform import distance_transform
from sr_jax.saliency.options import Options

__all__ = [
    "Options",
    "context_aware",
    "context_aware_batch",
    "distance_transform",
    "rgb_to_lab",
]
