"""Looking inside a model: class models, segmentation from saliency and
relevant features.

  * `class_model`: the image that maximises a class score (Simonyan et al.
    2014, §2);
  * `segment`: a GrabCut segmentation seeded by a saliency map (Simonyan et
    al. 2014, §3.1);
  * `fit`, `RelevantFeatures`, `average_visualisations`, `explain`,
    `register_relevant_features`: relevant internal features selected by the
    mu-lasso, their average visualisations and explanations from them
    (Oramas et al., ICLR 2019; modules `features`, `lasso`,
    `receptive_fields`, `feature_explanations`, `feature_report`).
"""

from sr_jax.interpret.class_models import ClassModel, class_model
from sr_jax.interpret.feature_explanations import (explain,
                                                   register_relevant_features)
from sr_jax.interpret.features import RelevantFeatures, fit, load
from sr_jax.interpret.lasso import mu_lasso, project_l1_ball
from sr_jax.interpret.receptive_fields import average_visualisations
from sr_jax.interpret.segmentation import Segmentation, segment

__all__ = [
    "ClassModel", "RelevantFeatures", "Segmentation", "average_visualisations",
    "class_model", "explain", "fit", "load", "mu_lasso", "project_l1_ball",
    "register_relevant_features", "segment",
]
