"""The batch runner: explaining a folder of images, resumable and multi-host.

One concept per module:

* `run`: the loop (`run`), one image (`explain_one`), the explainer of a
  loaded model (`make_explainer`) and the device mesh (`make_mesh`);
* `journal`: the crash-safe results journals (one per process), the locks
  and recovery;
* `outputs`: the files of one image (`.npz`, panel `.png`, thumbnail) and
  its record;
* `inputs`: finding the input images, each process's share, batching;
* `options`: option text, weights, `run.json`;
* `hosts`: `jax.distributed` (start, barriers);
* `report`: the HTML page `index.html`;
* `progress`: progress bars (tqdm) for any long loop.
"""

from sr_jax.runner.hosts import initialize
from sr_jax.runner.inputs import find_inputs, share
from sr_jax.runner.journal import CONFIG, FAILURES, LOCK, RESULTS
from sr_jax.runner.options import parse_options, resolve_weights
from sr_jax.runner.outputs import ssim_figures, write_outputs
from sr_jax.runner.progress import progress
from sr_jax.runner.report import INDEX
from sr_jax.runner.run import (arch_name, ExplainFn, Summary, explain_one, make_explainer,
                               make_mesh, run)

__all__ = [
    "CONFIG",
    "arch_name",
    "ExplainFn",
    "FAILURES",
    "INDEX",
    "LOCK",
    "RESULTS",
    "Summary",
    "explain_one",
    "find_inputs",
    "initialize",
    "make_explainer",
    "make_mesh",
    "parse_options",
    "progress",
    "resolve_weights",
    "run",
    "share",
    "ssim_figures",
    "write_outputs",
]
