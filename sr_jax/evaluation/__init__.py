"""The evaluation suite: every method against every measure, with intervals.

One run (`evaluate`, or `python -m sr_jax.scripts.evaluate`) scores every
registered attribution method, its SR map and its meta-saliency and smoothed
versions on held-out images with ground-truth masks, by the protocols of
`sr_jax.metrics`, and writes a resumable journal, `results.json`,
`results.md` and two figures. One concept per module:

* `variants`: which maps are scored ("all", "sr:<m>", "meta:<m>", ...);
* `data`: the held-out synthetic set, or a folder of images and masks;
* `explain`: maps of a batch as HxW planes;
* `measures`: every measure of a batch, per image, with its chance level;
* `protocol`: the settings (`Protocol`) and one variant's batch;
* `aggregate`: means with bootstrap intervals, and the Markdown tables;
* `figures`: the score panels and the gallery (PIL);
* `report`: results.json, results.md, the figures, the run's settings;
* `run`: the resumable loop (`evaluate`).
"""

from sr_jax.evaluation.aggregate import MEASURES, Measure
from sr_jax.evaluation.data import EvalSet, folder_set, synthetic_set
from sr_jax.evaluation.protocol import Protocol
from sr_jax.evaluation.run import Summary, evaluate
from sr_jax.evaluation.variants import Variant, all_names, resolve

__all__ = [
    "EvalSet", "MEASURES", "Measure", "Protocol", "Summary", "Variant",
    "all_names", "evaluate", "folder_set", "resolve", "synthetic_set",
]
