"""Folding BatchNorm into the Conv or Dense layer it follows, for LRP.

At inference a BatchNorm is the affine map `y * a + c` per channel, with
`a = scale / sqrt(var + eps)` and `c = bias - mean * a`. Folded into the
preceding layer (`w' = w * a`, `b' = b * a + c`) it disappears: the layer's
rule sees the merged weights and the BatchNorm hands relevance through. This
is zennit's `SequentialMergeBatchNorm` canonizer (Anders et al. 2021); Captum
instead applies the epsilon rule to the BatchNorm itself.

The pairs are found by one abstract trace (`jax.eval_shape`): a BatchNorm is
folded when its input is exactly the output of a Conv or Dense call. That
output must feed nothing but the BatchNorm, as in `conv -> bn -> relu`.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

Path = tuple[str, ...]


class Fold(NamedTuple):
  """A BatchNorm to fold into the layer at some path.

  Attributes:
    path: the BatchNorm's module path.
    epsilon: its variance epsilon.
  """

  path: Path
  epsilon: float


def find_folds(apply_fn: Callable[..., Any], *args: Any) -> dict[Path, Fold]:
  """Maps the path of each Conv/Dense followed directly by a BatchNorm to it.

  Args:
    apply_fn: the forward function, e.g. `lambda v, x: model.apply(v, x)`.
    *args: its arguments (arrays or tracers; only shapes are used).

  Returns:
    `{layer_path: Fold(batchnorm_path, epsilon)}` for BatchNorms that use
    running statistics on the last axis.
  """
  outputs: dict[int, tuple[Path, Any]] = {}
  folds: dict[Path, Fold] = {}

  def interceptor(next_fun, a, kwargs, context):
    y = next_fun(*a, **kwargs)
    if context.method_name != "__call__":
      return y
    module = context.module
    if isinstance(module, (nn.Conv, nn.Dense)):
      outputs[id(y)] = (module.path, y)  # keep y alive: ids stay unique
    elif isinstance(module, nn.BatchNorm) and a and id(a[0]) in outputs:
      path, y0 = outputs[id(a[0])]
      running = nn.merge_param("use_running_average",
                               module.use_running_average,
                               kwargs.get("use_running_average"))
      if y0 is a[0] and running and module.axis in (-1, a[0].ndim - 1):
        folds[path] = Fold(tuple(module.path), float(module.epsilon))
    return y

  with nn.intercept_methods(interceptor):
    jax.eval_shape(apply_fn, *args)
  return folds


def _lookup(tree: Mapping[str, Any], path: Path) -> Mapping[str, Any]:
  for name in path:
    tree = tree[name]
  return tree


def fold_params(params: Mapping[str, Any], variables: Mapping[str, Any],
                fold: Fold) -> dict[str, jax.Array]:
  """The layer's `{"kernel", "bias"}` with the BatchNorm at `fold.path` merged.

  Args:
    params: the Conv/Dense parameters (`kernel`, optional `bias`).
    variables: the model's full variables (`params` and `batch_stats`).
    fold: which BatchNorm.

  Returns:
    Merged `kernel` and `bias` (the bias exists even if the layer had none).
  """
  bn_params = _lookup(variables.get("params", {}), fold.path)
  stats = _lookup(variables["batch_stats"], fold.path)
  kernel = params["kernel"]
  mean, var = stats["mean"], stats["var"]
  scale = bn_params.get("scale", jnp.ones_like(mean))
  shift = bn_params.get("bias", jnp.zeros_like(mean))
  a = scale * jax.lax.rsqrt(var + fold.epsilon)
  bias = params.get("bias", jnp.zeros_like(mean))
  return {"kernel": kernel * a.astype(kernel.dtype),
          "bias": ((bias - mean) * a + shift).astype(kernel.dtype)}
