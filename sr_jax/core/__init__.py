"""The explanation core: any JAX model as `(f, params)`, its traced graph, and
one interpreter that runs that graph with a method's rules.

* `as_function` (models.py): linen, NNX, equinox or `f(params, x)` ->
  `(ModelFn, params)`.
"""

from sr_jax.core.models import (KINDS, ModelFn, as_function, layer_name,
                                model_kind, rebind)

__all__ = ["KINDS", "ModelFn", "as_function", "layer_name", "model_kind", "rebind"]
