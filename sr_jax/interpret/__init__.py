"""Looking inside a model: class models and segmentation from saliency.

  * `class_model`: the image that maximises a class score (Simonyan et al.
    2014, §2);
  * `segment`: a GrabCut segmentation seeded by a saliency map (Simonyan et
    al. 2014, §3.1).
"""

from sr_jax.interpret.class_models import ClassModel, class_model
from sr_jax.interpret.segmentation import Segmentation, segment

__all__ = ["ClassModel", "Segmentation", "class_model", "segment"]
