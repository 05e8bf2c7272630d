"""Deprecated: the batch runner is now the package `sr_jax.runner`.

This module re-exports the names it used to define, for one release;
import them from `sr_jax.runner` instead. `Progress` is gone: long loops use
`sr_jax.runner.progress.progress` (tqdm).
"""

import warnings

from sr_jax.runner import (CONFIG, FAILURES, LOCK, RESULTS, ExplainFn,  # noqa: F401
                           Summary, explain_one, find_inputs, make_explainer,
                           make_mesh, parse_options, resolve_weights, run,
                           ssim_figures, write_outputs)

warnings.warn("sr_jax.batch is deprecated; import sr_jax.runner instead.",
              DeprecationWarning, stacklevel=2)


def __getattr__(name: str):
  if name == "Progress":
    raise AttributeError(
        "sr_jax.batch.Progress was replaced by tqdm: use "
        "sr_jax.runner.progress.progress(total=..., desc=...).")
  raise AttributeError(f"module 'sr_jax.batch' has no attribute {name!r}")
