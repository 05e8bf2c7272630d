"""Layer-wise Relevance Propagation as custom VJP rules.

`relevance(model, variables, x)` explains any Flax linen classifier built from
convolutions, dense layers, pooling and activations. Rules (`sr_jax.lrp.rules`)
are small immutable values run by one `jax.custom_vjp`; composites
(`sr_jax.lrp.composites`) say which layer gets which rule.

Examples:
  >>> import jax.numpy as jnp
  >>> import sr_jax
  >>> from sr_jax.lrp import Composite, layer_map, rules
  >>> model, variables = sr_jax.load_model("vgg_tiny")
  >>> x = jnp.ones((1, 32, 32, 3))
  >>> R = sr_jax.lrp.relevance(model, variables, x, composite="epsilon_plus")
  >>> custom = Composite("mine", layer_map(rules.gamma(0.5), rules.epsilon(0.1),
  ...                                      first=rules.flat()))
  >>> R = sr_jax.lrp.relevance(model, variables, x, composite=custom)
"""

from sr_jax.lrp import composites, rules
from sr_jax.lrp.composites import (COMPOSITES, Composite, LayerInfo, box_bounds,
                                   first_layer, get_composite, is_type,
                                   layer_map, path_matches, register_composite)
from sr_jax.lrp.core import apply_rule, relevance
from sr_jax.lrp.rules import (Rule, Term, alpha_beta, epsilon, flat, gamma,
                              gradient, keep_gradient, pass_, wsquare, zbox,
                              zero, zplus)

__all__ = [
    "COMPOSITES", "Composite", "LayerInfo", "Rule", "Term", "alpha_beta",
    "apply_rule", "box_bounds", "composites", "epsilon", "first_layer",
    "flat", "gamma", "get_composite", "gradient", "is_type", "keep_gradient",
    "layer_map", "pass_", "path_matches", "register_composite", "relevance",
    "rules", "wsquare", "zbox", "zero", "zplus",
]
