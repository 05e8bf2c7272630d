"""Scores for explanation maps, one concept per module.

* `ssim`: the SR paper's SSIM ratio (Li et al. 2017).
* `localisation`: the pointing game (Zhang et al. 2016), relevance mass and
  rank accuracy (Arras et al. 2022), An8Flower-style IoU curves (Oramas et
  al. 2019).
* `perturbation`: pixel flipping and region perturbation with AOPC (Samek et
  al. 2017).
* `sanity`: model randomisation (Adebayo et al. 2018) and class sensitivity
  (Rebuffi et al. 2020).
* `complexity`: Gini sparseness (Chalasani et al. 2020) and entropy.
* `bootstrap`: percentile bootstrap confidence intervals.

Every function takes NumPy or JAX arrays. Map-vs-mask metrics take one HxW
map with an HxW mask, or a batch (N, H, W) with masks (N, H, W), and then
return a float per image as an (N,) array. Maps must be finite (NaN or inf
raise a ValueError), and a map with channels must be reduced to one plane
first (for LRP, `lrp_map` does the SR paper's reduction). Scaling maps lives
in `sr_jax.maps`; `normalize`, `lrp_map` and `as_map` are re-exported here.
"""

from sr_jax.maps import as_map, lrp_map, normalize
from sr_jax.metrics._common import Score
from sr_jax.metrics.bootstrap import BootstrapCI, bootstrap_ci
from sr_jax.metrics.complexity import gini_sparseness, map_entropy
from sr_jax.metrics.localisation import (POINTING_REFERENCE_SIZE,
                                         POINTING_TOLERANCE, IoUCurve,
                                         PointingGameResult, iou_curve,
                                         pointing_game, pointing_game_accuracy,
                                         pointing_tolerance, rank_accuracy,
                                         relevance_mass_accuracy)
from sr_jax.metrics.perturbation import (BASELINES, PixelFlipping,
                                         RegionPerturbation, pixel_flipping,
                                         region_perturbation)
from sr_jax.metrics.sanity import (ClassSensitivity, ModelRandomization,
                                   RandomizationSimilarity, class_sensitivity,
                                   extreme_classes, gaussian_like,
                                   model_randomization,
                                   randomization_similarity)
from sr_jax.metrics.ssim import SSIMRatio, ssim_ratio

__all__ = [
    "BASELINES", "BootstrapCI", "ClassSensitivity", "IoUCurve",
    "ModelRandomization", "POINTING_REFERENCE_SIZE", "POINTING_TOLERANCE",
    "PixelFlipping", "PointingGameResult", "RandomizationSimilarity",
    "RegionPerturbation", "SSIMRatio", "Score", "as_map", "bootstrap_ci",
    "class_sensitivity", "extreme_classes", "gaussian_like",
    "gini_sparseness", "iou_curve", "lrp_map", "map_entropy",
    "model_randomization", "normalize", "pixel_flipping", "pointing_game",
    "pointing_game_accuracy", "pointing_tolerance", "randomization_similarity",
    "rank_accuracy", "region_perturbation", "relevance_mass_accuracy",
    "ssim_ratio",
]
