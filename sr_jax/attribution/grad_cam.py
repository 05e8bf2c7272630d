"""Grad-CAM (Selvaraju et al., ICCV 2017) at any convolutional layer.

The map is max(0, sum_c A_c * mean_u dy/dA_c): the layer's activation A
weighted per channel by the spatial mean of the target logit's gradient,
summed over channels, its positive part upsampled bilinearly to the input
and broadcast over its channels. One forward and one backward pass. In
Rebuffi et al.'s terms (`_extract`) it is the product with the averaged
gradient, aggregated by a channel sum, then a ReLU. On a network whose
convolutions end in global average pooling and one dense layer it equals
CAM (Zhou et al. 2016) up to a positive scale.
"""

from __future__ import annotations

from typing import Any, Optional

import jax
from jax.typing import ArrayLike

from sr_jax.attribution import _extract
from sr_jax.attribution._core import register
from sr_jax.core.backward import Target

RECIPE = _extract.Recipe(_extract.mean_gradient_product, _extract.channel_sum,
                         relu=True)


@register("grad_cam")
def grad_cam(model: Any, variables: Any, x: ArrayLike, *,
             target: Target = None, layer: Optional[str] = None
             ) -> jax.Array:
  """Grad-CAM of the target logit at `layer`.

  Args:
    model: a linen, NNX or equinox module, or a function `f(params, x)`.
    variables: its variables or params (None for NNX and equinox).
    x: NHWC float input batch.
    target: None (argmax), an int, or one int per example.
    layer: a named value with two spatial axes (a conv layer's output, the
      activation after it, a pooling output); None: the activation of the
      last convolution (`sr_jax.attribution.layers` lists the names).

  Returns:
    The non-negative map upsampled to the input, an array of `x.shape`.

  Raises:
    ValueError: for an unknown layer (the message lists the known ones), a
      layer without two spatial axes, or an invalid target.

  Examples:
    >>> import sr_jax
    >>> model, variables = sr_jax.load_model("vgg_tiny")
    >>> x = jax.numpy.ones((1, 32, 32, 3))
    >>> grad_cam(model, variables, x, target=0, layer="features_3/relu").shape
    (1, 32, 32, 3)
  """
  return _extract.one_layer(RECIPE, model, variables, x, target, layer)


grad_cam.recipe = RECIPE
