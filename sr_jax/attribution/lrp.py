"""LRP as an attribution method: `sr_jax.lrp.relevance` under the contract."""

from __future__ import annotations

from typing import Any, Union

import jax
from jax.typing import ArrayLike

from sr_jax import lrp as _lrp
from sr_jax.attribution._core import register
from sr_jax.core.backward import Target


@register("lrp")
def lrp(model: Any, variables: Any, x: ArrayLike, *, target: Target = None,
        composite: Union[str, _lrp.Composite] = "epsilon_plus_flat"
        ) -> jax.Array:
  """Layer-wise relevance (see `sr_jax.lrp.relevance`) with `composite`."""
  return _lrp.relevance(model, variables, x, target=target,
                        composite=composite)
