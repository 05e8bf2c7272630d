"""Gradient-family attribution methods, for comparison with LRP and SR maps."""

from sr_jax.attribution.gradient import (gradient, input_times_gradient,
                                         integrated_gradients, smoothgrad)

__all__ = ["gradient", "input_times_gradient", "integrated_gradients",
           "smoothgrad"]
