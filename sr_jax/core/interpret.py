"""Running a traced graph with a method's rules, and reading named values.

`evaluate(graph, params, x, rules=..., taps=...)` computes the model's logits
node by node, the way `jax.core.eval_jaxpr` does, but

* a layer for which `rules.layer(layer)` returns a rule is evaluated as
  `rules.apply(rule, layer_fn, x, params)` (LRP: the rule's `custom_vjp`,
  `sr_jax.lrp.core.apply_rule`) with `layer_fn` the layer's
  function: the linear node, its unit-axis relayouts, then `* scale + bias`
  with a per-channel scale folded into the kernel;
* an activation gets the backward `rules.activation(name, x, y, g)` when
  given (guided backprop, deconvnet, DeepLIFT);
* a residual sum gets `rules.residual` (LRP splits relevance in proportion to
  the two inputs);
* an elementwise affine node outside a layer passes the cotangent through
  unchanged when `rules.affine_identity` (LRP: a one-to-one map conserves
  relevance);
* each tapped value is returned, and has a zero "perturbation" added whose
  gradient is the gradient at that value.

Everything is traced by the caller's `jax.vjp` or `jax.jit`: the interpreter
itself runs once per trace.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp

from sr_jax.core.graph import Graph, Layer, Lit, Node

ActivationRule = Callable[[str, jax.Array, jax.Array, jax.Array], jax.Array]


class Rules(NamedTuple):
  """What a method changes in the backward pass (all None: the gradient).

  Attributes:
    layer: `layer -> rule or None`; None keeps the layer's own backward.
    apply: `(rule, layer, layer_fn, x, params) -> z`, evaluating a layer
      with the rule (its forward must be `layer_fn(x, params)`).
    activation: `(name, x, y, g) -> g_in` for every activation ("relu",
      "gelu", ...), with x its input, y its output and g the cotangent.
    residual: `(a, b, z, g) -> (g_a, g_b)` for sums `z = a + b` of two
      activations.
    activation_vjp: call `activation(name, x, y, g, vjp)` with `vjp(c)` the
      node's own VJP at x (guided backprop keeps non-ReLU activations'
      gradient; DeepLIFT falls back to it where the input barely changes).
    affine_identity: elementwise affine nodes outside layers pass the
      cotangent through unchanged; one that uses parameters (a normalization
      that could not be folded into a layer) raises a ValueError.
  """

  layer: Optional[Callable[[Layer], Any]] = None
  apply: Optional[Callable[..., jax.Array]] = None
  activation: Optional[ActivationRule] = None
  residual: Optional[Callable[..., tuple[jax.Array, jax.Array]]] = None
  affine_identity: bool = False
  activation_vjp: bool = False


def _bind(node: Node, values: Sequence[Any]) -> list[Any]:
  eqn = node.eqn
  params = eqn.primitive.get_bind_params(eqn.params)
  with eqn.ctx.manager:
    out = eqn.primitive.bind(*values, **params)
  return list(out) if eqn.primitive.multiple_results else [out]


def _value(env: Mapping[int, Any], ref: Any) -> Any:
  return ref.value if isinstance(ref, Lit) else env[ref]


def layer_params(graph: Graph, layer: Layer, env: Mapping[int, Any]
                 ) -> dict[str, jax.Array]:
  """The layer's `{"kernel", "scale", "bias"}` (those it has) from `env`."""
  node = graph.nodes[layer.node]
  kernel = None
  if node.primitive in ("conv_general_dilated", "dot_general"):
    kernel = _value(env, node.inputs[1 - layer.x_arg])
  scale = bias = None
  for step in layer.steps:
    c = None if step.operand is None else _value(env, step.operand)
    if step.op == "neg":
      scale, bias = _mul(scale, -1.0), _mul(bias, -1.0)
    elif step.op == "add":
      bias = c if bias is None else bias + c
    elif step.op == "sub":
      if step.const_first:
        scale, bias = _mul(scale, -1.0), (c if bias is None else c - bias)
      else:
        bias = -c if bias is None else bias - c
    elif step.op == "mul":
      scale, bias = _mul(scale, c), _mul(bias, c)
    elif step.op == "div":
      scale = (1.0 / c) if scale is None else scale / c
      bias = None if bias is None else bias / c
  params: dict[str, jax.Array] = {}
  if kernel is not None:
    kernel = jnp.asarray(kernel)
    if scale is not None and layer.kernel_axis is not None:
      vec = jnp.reshape(jnp.asarray(scale), (-1,))
      shape = [1] * kernel.ndim
      shape[layer.kernel_axis] = -1 if vec.size > 1 else 1
      kernel = kernel * jnp.reshape(vec, shape).astype(kernel.dtype)
      scale = None
    params["kernel"] = kernel
  if scale is not None:
    params["scale"] = jnp.asarray(scale)
  if bias is not None:
    params["bias"] = jnp.asarray(bias)
  return params


def _mul(a: Any, c: Any) -> Any:
  if a is None:
    return c if not isinstance(c, float) else (None if c == 1.0 else c)
  return a * c


def layer_function(graph: Graph, layer: Layer
                   ) -> Callable[[jax.Array, Mapping[str, jax.Array]],
                                 jax.Array]:
  """`(x, params) -> z`: the layer's affine map with the given parameters."""
  node = graph.nodes[layer.node]
  relayout = [graph.nodes[j] for j in layer.relayout]

  def fn(x: jax.Array, params: Mapping[str, jax.Array]) -> jax.Array:
    args = list(node.inputs)
    args[layer.x_arg] = x
    if "kernel" in params:
      args[1 - layer.x_arg] = params["kernel"]
    values = [a.value if isinstance(a, Lit) else a for a in args]
    (z,) = _bind(node, values)
    for r in relayout:
      (z,) = _bind(r, [z])
    if "scale" in params:
      z = z * params["scale"].astype(z.dtype)
    if "bias" in params:
      z = z + params["bias"].astype(z.dtype)
    return z
  return fn


def _with_backward(forward: Callable[..., Any],
                   backward: Callable[..., Any]) -> Callable[..., Any]:
  """`forward`, whose VJP is `backward(residuals, g)` with residuals
  `(inputs, output)`."""
  @jax.custom_vjp
  def f(*xs):
    return forward(*xs)

  def fwd(*xs):
    y = forward(*xs)
    return y, (xs, y)

  def bwd(res, g):
    xs, y = res
    return tuple(backward(xs, y, g))

  f.defvjp(fwd, bwd)
  return f


def evaluate(graph: Graph, params: Any, x: jax.Array, *,
             rules: Rules = Rules(), taps: Sequence[str] = (),
             perturbations: Optional[Mapping[str, jax.Array]] = None
             ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The model's logits under `rules`, and the tapped values.

  Args:
    graph: from `sr_jax.core.graph.trace` with the same shapes.
    params: the parameter pytree.
    x: the input batch.
    rules: the backward rules to apply.
    taps: names in `graph.taps` to return.
    perturbations: arrays added to tapped values (zeros: their gradient is
      the gradient at that value).

  Returns:
    `(logits, {name: value})`.
  """
  env: dict[int, Any] = dict(graph.consts)
  for key, leaf in zip(graph.param_keys, jax.tree_util.tree_leaves(params)):
    env[key] = leaf
  env[graph.x_key] = x
  tap_keys = {graph.taps[name].key: name for name in taps}
  perturbations = perturbations or {}
  tapped: dict[str, jax.Array] = {}

  def store(key: int, value: Any) -> None:
    name = tap_keys.get(key)
    if name is not None:
      if name in perturbations:
        value = value + perturbations[name].astype(value.dtype)
      tapped[name] = value
    env[key] = value

  ordered = [n for n in graph.nodes if not n.on_path] + [
      n for n in graph.nodes if n.on_path]
  index = {id(n): i for i, n in enumerate(graph.nodes)}
  for node in ordered:
    i = index[id(node)]
    if node.role == "chain":
      continue
    if i in graph.layers:
      layer = graph.layers[i]
      rule = rules.layer(layer) if rules.layer is not None else None
      if rule is not None:
        fn = layer_function(graph, layer)
        p = layer_params(graph, layer, env)
        x_in = _value(env, node.inputs[layer.x_arg])
        store(layer.output, rules.apply(rule, layer, fn, x_in, p))
      else:
        _evaluate_plain(graph, layer, env, store)
      continue
    values = [_value(env, r) for r in node.inputs]
    outs = _node(node, i, values, graph, rules)
    for key, value in zip(node.outputs, outs):
      store(key, value)
  return _value(env, graph.out_key), tapped


def _evaluate_plain(graph: Graph, layer: Layer, env: dict[int, Any],
                    store: Callable[[int, Any], None]) -> None:
  for j in (layer.node,) + layer.chain:
    node = graph.nodes[j]
    outs = _bind(node, [_value(env, r) for r in node.inputs])
    for key, value in zip(node.outputs, outs):
      if key == layer.output:
        store(key, value)
      else:
        env[key] = value


def _node(node: Node, i: int, values: list[Any], graph: Graph,
          rules: Rules) -> list[Any]:
  if not node.on_path:
    return _bind(node, values)
  on = [j for j, r in enumerate(node.inputs) if isinstance(r, int)
        and graph.avals.get(r) is not None and _on_path(graph, r)]
  if node.role == "activation" and rules.activation is not None:
    j = on[0]
    name = graph.activations.get(i, node.primitive)

    def forward(xj):
      vals = list(values)
      vals[j] = xj
      return _bind(node, vals)[0]

    def backward_act(xs, y, g):
      if rules.activation_vjp:
        own = lambda c: jax.vjp(forward, xs[0])[1](c)[0]  # noqa: E731
        return (rules.activation(name, xs[0], y, g, own),)
      return (rules.activation(name, xs[0], y, g),)

    fn = _with_backward(forward, backward_act)
    return [fn(values[j])]
  if node.role == "residual" and rules.residual is not None:
    sign = -1.0 if node.primitive == "sub" else 1.0

    def backward(xs, y, g):
      ga, gb = rules.residual(xs[0], sign * xs[1], y, g)
      return ga, sign * gb

    fn = _with_backward(lambda a, b: _bind(node, [a, b])[0], backward)
    return [fn(values[0], values[1])]
  if node.role == "affine" and rules.affine_identity:
    if node.param_layers:
      raise ValueError(
          f"No rule covers the parameters of `{', '.join(node.param_layers)}`"
          f": they enter `{node.primitive}` (at `{node.stack}`) outside a "
          "conv or dense layer, as a normalization that cannot be folded "
          "into the layer before it does (LayerNorm, or a BatchNorm that does "
          "not directly follow a conv or dense layer).")
    j = on[0]

    def forward_affine(xj):
      vals = list(values)
      vals[j] = xj
      return _bind(node, vals)[0]

    fn = _with_backward(forward_affine, lambda xs, y, g: (g.astype(
        xs[0].dtype),))
    return [fn(values[j])]
  return _bind(node, values)


def _on_path(graph: Graph, key: int) -> bool:
  on = getattr(graph, "_on_path_keys", None)
  if on is None:
    on = {k for n in graph.nodes if n.on_path for k in n.outputs}
    on.add(graph.x_key)
    graph._on_path_keys = on  # pylint: disable=protected-access
  return key in on
