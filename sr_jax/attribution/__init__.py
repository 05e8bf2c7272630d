"""Attribution methods, one per file, under one contract.

Every method is `fn(model, variables, x, *, target=None, **options)` for any
model the explanation core accepts (linen, NNX, equinox, `f(params, x)`),
takes an NHWC batch and returns a map shaped like `x`. Methods are registered
by name: `METHODS`, `get_method(name)`. `smooth(method, ...)` turns any of
them into its SmoothGrad version.

Examples:
  >>> import jax.numpy as jnp
  >>> import sr_jax
  >>> model, variables = sr_jax.load_model("vgg_tiny")
  >>> x = jnp.ones((1, 32, 32, 3))
  >>> m = get_method("input_x_gradient")(model, variables, x, target=0)
  >>> m.shape
  (1, 32, 32, 3)
"""

from sr_jax.attribution._core import METHODS, get_method, register
from sr_jax.attribution.combine import combine_layers, multi_layer
from sr_jax.attribution.deconvnet import deconvnet
from sr_jax.attribution.deeplift import deeplift
from sr_jax.attribution.deepshap import deepshap, expected_value
from sr_jax.attribution.grad_cam import grad_cam
from sr_jax.attribution.gradient import gradient, input_times_gradient
from sr_jax.attribution.guided_backprop import guided_backprop
from sr_jax.attribution.integrated_gradients import integrated_gradients
from sr_jax.attribution.lrp import lrp
from sr_jax.attribution.meta import meta
from sr_jax.attribution.normgrad import (linear_approx, normgrad,
                                         normgrad_conv, normgrad_selective)
from sr_jax.attribution.smoothgrad import smooth, smoothgrad
from sr_jax.core.backward import layers, target_array

__all__ = [
    "METHODS", "get_method", "gradient", "input_times_gradient",
    "integrated_gradients", "layers", "lrp", "register", "smooth",
    "smoothgrad", "target_array",
    "combine_layers", "deconvnet", "deeplift", "deepshap", "expected_value",
    "grad_cam", "guided_backprop", "linear_approx", "meta", "multi_layer",
    "normgrad", "normgrad_conv", "normgrad_selective",
]
