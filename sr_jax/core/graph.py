"""A model's traced graph: its layers, activations and the other nodes.

`trace(f, params, x)` traces `f(params, x)` to a jaxpr, inlines nested calls
(`jit`, `checkpoint`, and custom derivatives that hide a layer), and sorts the
equations on the path from the input to the logits into roles:

* **layer**: an affine map of one activation, given a rule by LRP. A
  `conv_general_dilated` or `dot_general` whose other operand comes from a
  parameter leaf is a "conv" or "dense" layer, named by that leaf's pytree
  path (`params/features_0/kernel` -> `features_0`). A linear map without
  parameters (`reduce_sum` and `reduce_window_sum`, so means and average
  pooling; products with constant matrices) is a "pool" layer. The bias add
  and any per-channel affine chain that follows (an inference BatchNorm:
  subtract, multiply, add) belong to the layer, with unit-axis reshapes and
  transposes between them (canonization: zennit's merged BatchNorm);
* **activation**: an elementwise nonlinearity of one activation:
  `jax.nn.relu`'s custom_jvp, `max(x, 0)`, tanh, sigmoid, GELU and the like;
* **residual**: the sum (or difference) of two activations;
* **affine**: an elementwise add, multiply or divide with a constant that is
  not part of a layer (normalization inside the model);
* **nonlinear**: other differentiable nodes that keep their gradient
  (max-pooling, products of two activations, a custom_vjp without layers);
* **structural**: reshapes, transposes, slices, padding, concatenation;
* **boolean**: comparisons and other non-differentiable outputs.

Any other primitive on that path raises a ValueError that names it and where
the model applies it. Nodes that do not depend on the input are "const": they
are computed once from the parameters.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable, Optional, Sequence, Union

import jax
import numpy as np
from jax.extend import core as jcore

from sr_jax.core import models

INLINE = frozenset({"jit", "pjit", "closed_call", "core_call", "remat2",
                    "checkpoint", "remat"})
LINEAR = frozenset({"conv_general_dilated", "dot_general"})
POOLS = frozenset({"reduce_sum", "reduce_window_sum", "cumsum"})
AFFINE = frozenset({"add", "add_any", "sub", "mul", "div", "neg"})
STRUCTURAL = frozenset({
    "reshape", "transpose", "broadcast_in_dim", "squeeze", "expand_dims",
    "slice", "dynamic_slice", "concatenate", "pad", "rev", "copy", "copy_p",
    "convert_element_type", "reduce_precision", "gather", "split",
    "select_n", "stop_gradient", "optimization_barrier", "sharding_constraint",
    "dynamic_update_slice"})
ACTIVATIONS = frozenset({
    "tanh", "logistic", "exp", "exp2", "log", "log1p", "expm1", "erf",
    "erfc", "integer_pow", "pow", "sqrt", "rsqrt", "cbrt", "abs", "sin",
    "cos", "square", "sign", "floor", "ceil", "round", "max", "min",
    "custom_jvp_call", "clamp", "atan", "asinh", "tan"})
NONLINEAR = frozenset({"reduce_window_max", "reduce_window_min",
                       "reduce_max", "reduce_min", "custom_vjp_call",
                       "select_and_gather_add", "cumsum", "cummax",
                       "logsumexp"})
BOOLEAN = frozenset({"gt", "ge", "lt", "le", "eq", "ne", "and", "or", "not",
                     "argmax", "argmin", "is_finite"})
# Unit-axis reshapes and transposes may sit between a layer and its bias.
_RELAYOUT = frozenset({"reshape", "squeeze", "expand_dims", "transpose"})


@dataclasses.dataclass(frozen=True)
class Lit:
  """A literal or constant operand."""

  value: Any


Ref = Union[int, Lit]


@dataclasses.dataclass
class Node:
  """One equation of the flattened graph.

  Attributes:
    eqn: the jaxpr equation (its primitive and parameters are re-bound).
    inputs: operand references: keys of values, or literals.
    outputs: keys of the results.
    stack: where the model applies it (JAX's name stack).
    role: see the module docstring.
    on_path: depends on the model input.
    param_layers: for an affine node outside a layer, the layers whose
      parameters it uses (a normalization that could not be folded).
  """

  eqn: Any
  inputs: tuple[Ref, ...]
  outputs: tuple[int, ...]
  stack: str
  role: str = "const"
  on_path: bool = False
  param_layers: tuple[str, ...] = ()

  @property
  def primitive(self) -> str:
    return self.eqn.primitive.name


@dataclasses.dataclass(frozen=True)
class AffineStep:
  """One folded elementwise step `z <- z (op) c` of a layer's chain."""

  op: str
  operand: Optional[Ref]
  const_first: bool = False


@dataclasses.dataclass(frozen=True)
class Layer:
  """An affine layer: a linear node, then unit-axis relayouts, then `* A + B`.

  Attributes:
    name: the layer's name (its parameter path, or where a pool is applied).
    kind: "conv", "dense" or "pool".
    first: the first conv or dense layer of the forward pass.
    node: index of the linear node.
    x_arg: which operand of that node is the activation.
    relayout: indices of the unit-axis reshape/transpose nodes after it.
    steps: the folded elementwise steps (bias, BatchNorm), in order.
    chain: indices of every node folded into the layer.
    output: key of the layer's final output.
    kernel_axis: the kernel axis of output features, where a per-feature
      scale folds into the kernel; None: the scale stays a separate factor.
    shape: shape of the layer's output.
    primitive: the linear node's primitive.
    eqn_params: the linear node's parameters (strides, padding, dimension
      numbers of a convolution).
  """

  name: str
  kind: str
  first: bool
  node: int
  x_arg: int
  relayout: tuple[int, ...]
  steps: tuple[AffineStep, ...]
  chain: tuple[int, ...]
  output: int
  kernel_axis: Optional[int]
  shape: tuple[int, ...]
  primitive: str
  eqn_params: Any = None

  @property
  def path(self) -> str:
    return self.name


@dataclasses.dataclass(frozen=True)
class Tap:
  """A named intermediate value that a method can read (and perturb).

  Attributes:
    name: its name (a layer's, or "<layer>/relu" for the activation after it).
    key: the value's key.
    kind: "conv", "dense", "pool", "activation" or "nonlinear".
    feature_axis: the channel axis (None: unknown).
    spatial_axes: the spatial axes (empty: none).
    shape: the value's shape.
  """

  name: str
  key: int
  kind: str
  feature_axis: Optional[int]
  spatial_axes: tuple[int, ...]
  shape: tuple[int, ...]


@dataclasses.dataclass
class Graph:
  """The flattened, classified graph of `f(params, x)`.

  Attributes:
    nodes: every equation, in evaluation order.
    param_keys: keys of the parameter leaves, in flattening order.
    x_key: key of the input.
    out_key: key (or literal) of the logits.
    consts: values of constants, by key.
    layers: the layers, in forward order, by the index of their linear node.
    taps: named values, in forward order.
    avals: abstract value of every key.
  """

  nodes: list[Node]
  param_keys: tuple[int, ...]
  x_key: int
  out_key: Ref
  consts: dict[int, Any]
  layers: dict[int, Layer]
  taps: dict[str, Tap]
  avals: dict[int, Any]
  activations: dict[int, str] = dataclasses.field(default_factory=dict)

  def layer_names(self) -> list[str]:
    return [layer.name for layer in self.layers.values()]


class _Flattener:
  """Inlines nested calls into one list of nodes with integer keys."""

  def __init__(self):
    self.nodes: list[Node] = []
    self.consts: dict[int, Any] = {}
    self.avals: dict[int, Any] = {}
    self.on_path: set[int] = set()
    self._next = 0

  def new_key(self, aval: Any) -> int:
    key = self._next
    self._next += 1
    self.avals[key] = aval
    return key

  def ref(self, env: dict, atom: Any) -> Ref:
    if isinstance(atom, jcore.Literal):
      return Lit(atom.val)
    return env[atom]

  def run(self, jaxpr: Any, consts: Sequence[Any], in_refs: Sequence[Ref],
          stack: str) -> list[Ref]:
    env: dict[Any, Ref] = {}
    for var, value in zip(jaxpr.constvars, consts):
      key = self.new_key(var.aval)
      self.consts[key] = value
      env[var] = key
    for var, ref in zip(jaxpr.invars, in_refs):
      env[var] = ref
    for eqn in jaxpr.eqns:
      self.eqn(eqn, env, stack)
    return [self.ref(env, v) for v in jaxpr.outvars]

  def eqn(self, eqn: Any, env: dict, stack: str) -> None:
    name = eqn.primitive.name
    in_refs = [self.ref(env, v) for v in eqn.invars]
    here = _join(stack, str(eqn.source_info.name_stack))
    on_path = any(isinstance(r, int) and r in self.on_path for r in in_refs)
    inner = _inner_jaxpr(eqn)
    if inner is not None and on_path and self._inline(eqn, in_refs, inner):
      closed_jaxpr, consts = inner
      outs = self.run(closed_jaxpr, consts, in_refs, here)
      for var, ref in zip(eqn.outvars, outs):
        if not isinstance(var, jcore.DropVar):
          env[var] = ref
      return
    out_keys = []
    for var in eqn.outvars:
      key = self.new_key(var.aval)
      if not isinstance(var, jcore.DropVar):
        env[var] = key
      if on_path:
        self.on_path.add(key)
      out_keys.append(key)
    self.nodes.append(Node(eqn, tuple(in_refs), tuple(out_keys), here,
                           on_path=on_path))
    del name

  def _inline(self, eqn: Any, in_refs: Sequence[Ref], inner) -> bool:
    name = eqn.primitive.name
    if name in INLINE:
      return True
    jaxpr = inner[0]
    if name == "custom_jvp_call":
      return not _is_elementwise_activation(eqn, in_refs, jaxpr, self)
    if name == "custom_vjp_call":
      return _contains(jaxpr, LINEAR)
    return False


def _join(outer: str, inner: str) -> str:
  if not outer:
    return inner
  return f"{outer}/{inner}" if inner else outer


def _inner_jaxpr(eqn: Any) -> Optional[tuple[Any, Sequence[Any]]]:
  """`(jaxpr, consts)` of a call-like equation, or None."""
  for key in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
    value = eqn.params.get(key)
    if value is None:
      continue
    if hasattr(value, "jaxpr") and hasattr(value, "consts"):
      return value.jaxpr, value.consts
    if hasattr(value, "eqns"):
      return value, ()
  return None


def _contains(jaxpr: Any, primitives: frozenset) -> bool:
  for eqn in jaxpr.eqns:
    if eqn.primitive.name in primitives:
      return True
    inner = _inner_jaxpr(eqn)
    if inner is not None and _contains(inner[0], primitives):
      return True
  return False


def _elementwise_only(jaxpr: Any) -> bool:
  allowed = ACTIVATIONS | AFFINE | BOOLEAN | {"select_n", "broadcast_in_dim",
                                              "convert_element_type"}
  for eqn in jaxpr.eqns:
    inner = _inner_jaxpr(eqn)
    if inner is not None:
      if not _elementwise_only(inner[0]):
        return False
    elif eqn.primitive.name not in allowed:
      return False
  return True


def _is_elementwise_activation(eqn, in_refs, jaxpr, flat: _Flattener) -> bool:
  path_in = [i for i, r in enumerate(in_refs)
             if isinstance(r, int) and r in flat.on_path]
  if len(path_in) != 1 or len(eqn.outvars) != 1:
    return False
  x_aval = flat.avals[in_refs[path_in[0]]]
  return (tuple(eqn.outvars[0].aval.shape) == tuple(x_aval.shape)
          and _elementwise_only(jaxpr))


def _unsupported(node: Node, where: str) -> ValueError:
  return ValueError(
      f"The model applies `{node.primitive}` (at `{where or 'top level'}`) on "
      "the path from the input to the logits, and the explanation core has "
      "no rule for it. Supported: convolutions and dense layers, sums, means "
      "and average pooling, max-pooling, elementwise activations, residual "
      "sums, reshapes, slices and concatenation.")


def trace(f: Callable[[Any, jax.Array], jax.Array], params: Any,
          x: Any, *, kind: str = "function") -> Graph:
  """Traces `f(params, x)` and classifies its nodes.

  Args:
    f: the model function (see `sr_jax.core.as_function`).
    params: its parameter pytree (arrays, tracers or shape structs).
    x: the input batch (array, tracer or shape struct).
    kind: the model kind, for naming layers (see `models.layer_name`).

  Returns:
    The graph.

  Raises:
    ValueError: for a primitive without a rule on the path from the input
      to the logits, or a model whose output is not one array.
  """
  shape = lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype)  # noqa: E731
  closed = jax.make_jaxpr(f)(jax.tree.map(shape, params), shape(x))
  leaf_paths = models.leaf_paths(params)
  flat = _Flattener()
  in_keys = [flat.new_key(v.aval) for v in closed.jaxpr.invars]
  x_key = in_keys[-1]
  flat.on_path.add(x_key)
  outs = flat.run(closed.jaxpr, closed.consts, in_keys, "")
  if len(outs) != 1:
    raise ValueError(
        f"The model returns {len(outs)} arrays; it must return one array of "
        "logits (batch, classes).")
  graph = Graph(flat.nodes, tuple(in_keys[:-1]), x_key, outs[0], flat.consts,
                {}, {}, flat.avals)
  _classify(graph, flat.on_path)
  names = [models.layer_name(kind, p) for p in leaf_paths]
  _find_layers(graph, flat.on_path, names, kind)
  _name_taps(graph, kind)
  return graph


def _classify(graph: Graph, on_path: set[int]) -> None:
  for node in graph.nodes:
    if not node.on_path:
      continue
    prim = node.primitive
    xin = [i for i, r in enumerate(node.inputs)
           if isinstance(r, int) and r in on_path]
    out_dtype = node.eqn.outvars[0].aval.dtype if node.eqn.outvars else None
    if prim in LINEAR:
      if len(xin) != 1:
        raise ValueError(
            f"The model applies `{prim}` to two values that both depend on "
            f"the input (at `{node.stack or 'top level'}`); the explanation "
            "core supports layers with one input and constant weights.")
      node.role = "layer"
    elif prim in POOLS and prim != "cumsum":
      node.role = "layer"
    elif prim in AFFINE:
      if len(xin) == 2 and prim in ("add", "add_any", "sub"):
        node.role = "residual"
      elif len(xin) == 2 or (prim == "div" and xin == [1]):
        node.role = "nonlinear"
      elif _same_shape(graph, node, xin[0]):
        node.role = "affine"
      else:
        node.role = "structural"
    elif prim in BOOLEAN or (out_dtype is not None and not np.issubdtype(
        out_dtype, np.inexact)):
      node.role = "boolean"
    elif prim in ("max", "min") and len(xin) == 2:
      node.role = "nonlinear"
    elif prim in ACTIVATIONS:
      node.role = "activation" if (len(xin) == 1 and _same_shape(
          graph, node, xin[0])) else "nonlinear"
    elif _is_max_pool(node, xin):
      node.role = "layer"
    elif prim in NONLINEAR:
      node.role = "nonlinear"
    elif prim in STRUCTURAL:
      node.role = "nonlinear" if (prim == "select_n" and 0 in xin) else (
          "structural")
    else:
      raise _unsupported(node, node.stack)


def _is_max_pool(node: Node, xin: Sequence[int]) -> bool:
  """Max-pooling: a windowed or global max, or a custom_vjp around one."""
  if len(xin) != 1 or len(node.outputs) != 1:
    return False
  if node.primitive in ("reduce_window_max", "reduce_max"):
    return True
  inner = _inner_jaxpr(node.eqn)
  return (node.primitive == "custom_vjp_call" and inner is not None
          and not _contains(inner[0], LINEAR)
          and _contains(inner[0], frozenset({"reduce_max", "max",
                                             "reduce_window_max"})))


def _same_shape(graph: Graph, node: Node, arg: int) -> bool:
  x_aval = graph.avals[node.inputs[arg]]
  return tuple(node.eqn.outvars[0].aval.shape) == tuple(x_aval.shape)


def _uses(graph: Graph) -> dict[int, list[int]]:
  uses: dict[int, list[int]] = {}
  for i, node in enumerate(graph.nodes):
    for r in node.inputs:
      if isinstance(r, int):
        uses.setdefault(r, []).append(i)
  return uses


def _depends(graph: Graph) -> dict[int, frozenset[int]]:
  """For every key, the parameter leaves (by index) it is computed from."""
  deps = {k: frozenset((i,)) for i, k in enumerate(graph.param_keys)}
  for node in graph.nodes:
    if node.on_path:
      continue
    d = frozenset().union(*(deps.get(r, frozenset()) for r in node.inputs
                            if isinstance(r, int)))
    for k in node.outputs:
      deps[k] = d
  return deps


def _common_name(names: Sequence[str]) -> str:
  parts = [n.split("/") for n in names]
  common = []
  for level in zip(*parts):
    if len(set(level)) != 1:
      break
    common.append(level[0])
  return "/".join(common) or names[0]


def _stack_name(stack: str, kind: str) -> str:
  parts = [p for p in stack.split("/") if p]
  if kind == "linen" and parts:
    parts = parts[1:]  # the top module's class name
  parts = [re.sub(r"^(vmap|jvp|transpose)\((.*)\)$", r"\2", p) for p in parts]
  # jnp.einsum names its scope after the spec ("ih,nhwc,jw->nijc").
  return "/".join(p for p in parts if p and "->" not in p)


def _raw_feature_axes(node: Node, x_arg: int) -> tuple[Optional[int],
                                                        Optional[int]]:
  """(output axis of features, kernel axis of features) of a linear node."""
  eqn = node.eqn
  if node.primitive == "conv_general_dilated":
    if x_arg != 0:
      return None, None
    dn = eqn.params["dimension_numbers"]
    return dn.out_spec[1], dn.rhs_spec[0]
  if node.primitive == "dot_general":
    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
    k_arg = 1 - x_arg
    k_rank = len(eqn.invars[k_arg].aval.shape)
    x_rank = len(eqn.invars[x_arg].aval.shape)
    k_contract, k_batch = (rc, rb) if k_arg == 1 else (lc, lb)
    free = [d for d in range(k_rank) if d not in k_contract and d not in
            k_batch]
    if len(free) != 1:
      return None, None
    x_contract, x_batch = (lc, lb) if x_arg == 0 else (rc, rb)
    n_batch = len(k_batch)
    n_x_free = x_rank - len(x_contract) - len(x_batch)
    out_axis = n_batch + n_x_free if k_arg == 1 else n_batch
    return out_axis, free[0]
  return None, None


def _relayout(node: Node, origin: list[Optional[int]]
              ) -> Optional[list[Optional[int]]]:
  """Where each output axis of a unit-axis reshape/transpose came from."""
  in_shape = tuple(node.eqn.invars[0].aval.shape)
  out_shape = tuple(node.eqn.outvars[0].aval.shape)
  if node.primitive == "transpose":
    return [origin[p] for p in node.eqn.params["permutation"]]
  if [s for s in in_shape if s != 1] != [s for s in out_shape if s != 1]:
    return None
  kept = [origin[i] for i, s in enumerate(in_shape) if s != 1]
  out, j = [], 0
  for s in out_shape:
    if s == 1:
      out.append(None)
    else:
      out.append(kept[j])
      j += 1
  return out


def _foldable(graph: Graph, ref: Ref, rank: int, origin: list[Optional[int]],
              feature: Optional[int]) -> bool:
  shape = np.shape(ref.value) if isinstance(ref, Lit) else tuple(
      graph.avals[ref].shape)
  if len(shape) > rank:
    return False
  shape = (1,) * (rank - len(shape)) + tuple(shape)
  big = [d for d, s in enumerate(shape) if s != 1]
  return all(origin[d] is not None and origin[d] == feature for d in big)


def _find_layers(graph: Graph, on_path: set[int], leaf_names: Sequence[str],
                 kind: str) -> None:
  uses = _uses(graph)
  deps = _depends(graph)
  finals = {graph.out_key} if isinstance(graph.out_key, int) else set()
  counts: dict[str, int] = {}
  seen_first = False
  for i, node in enumerate(graph.nodes):
    if node.role != "layer":
      continue
    xin = [j for j, r in enumerate(node.inputs)
           if isinstance(r, int) and r in on_path]
    x_arg = xin[0]
    out_key = node.outputs[0]
    if node.primitive not in LINEAR | POOLS:  # max-pooling: no chain
      name = _stack_name(node.stack, kind) or "max_pool"
      k = counts.get(name, 0)
      counts[name] = k + 1
      name = f"{name}#{k}" if k else name
      graph.layers[i] = Layer(name, "max_pool", False, i, x_arg, (), (), (),
                              out_key, None, tuple(graph.avals[out_key].shape),
                              node.primitive, dict(node.eqn.params))
      continue
    has_kernel = node.primitive in LINEAR
    leaves = frozenset()
    if has_kernel:
      k_ref = node.inputs[1 - x_arg]
      leaves = deps.get(k_ref, frozenset()) if isinstance(k_ref, int) else (
          frozenset())
    layer_kind = "pool"
    if leaves:
      layer_kind = "conv" if node.primitive == "conv_general_dilated" else (
          "dense")
    if layer_kind == "pool":
      name = _stack_name(node.stack, kind) or node.primitive
    else:
      name = _common_name(sorted({leaf_names[j] for j in leaves}))
    k = counts.get(name, 0)
    counts[name] = k + 1
    if k:
      name = f"{name}#{k}"
    out_axis, kernel_axis = (_raw_feature_axes(node, x_arg) if leaves
                             else (None, None))
    rank = len(graph.avals[out_key].shape)
    origin: list[Optional[int]] = list(range(rank))
    relayout, steps, chain = [], [], []
    cur = out_key
    folded_scale = False
    while len(uses.get(cur, ())) == 1 and cur not in finals:
      j = uses[cur][0]
      nxt = graph.nodes[j]
      if nxt.role == "structural" and nxt.primitive in _RELAYOUT and not (
          steps):
        new = _relayout(nxt, origin)
        if new is None:
          break
        origin = new
        relayout.append(j)
      elif nxt.role == "affine":
        step = _affine_step(nxt, cur)
        if step is None:
          break
        if step.op in ("mul", "div") and leaves:
          if not _foldable(graph, step.operand, len(origin), origin,
                           out_axis):
            break
          folded_scale = True
        steps.append(step)
      else:
        break
      chain.append(j)
      cur = nxt.outputs[0]
    first = bool(leaves) and not seen_first
    seen_first |= bool(leaves)
    graph.layers[i] = Layer(
        name, layer_kind, first, i, x_arg, tuple(relayout), tuple(steps),
        tuple(chain), cur, kernel_axis if folded_scale else None,
        tuple(graph.avals[cur].shape), node.primitive, dict(node.eqn.params))
    for j in chain:
      graph.nodes[j].role = "chain"
  for node in graph.nodes:
    if node.on_path and node.role == "affine":
      leaves = frozenset().union(*(deps.get(r, frozenset()) for r in
                                   node.inputs if isinstance(r, int)))
      node.param_layers = tuple(sorted({leaf_names[j] for j in leaves}))


def _affine_step(node: Node, cur: int) -> Optional[AffineStep]:
  prim = node.primitive
  if prim == "neg":
    return AffineStep("neg", None)
  if prim not in ("add", "add_any", "sub", "mul", "div"):
    return None
  x_arg = node.inputs.index(cur)
  other = node.inputs[1 - x_arg]
  if prim == "div" and x_arg == 1:
    return None
  op = "add" if prim == "add_any" else prim
  return AffineStep(op, other, const_first=(x_arg == 1))


def _activation_name(node: Node) -> str:
  prim = node.primitive
  if prim == "custom_jvp_call":
    inner = _inner_jaxpr(node.eqn)
    names = [e.params.get("name") for e in inner[0].eqns
             if e.primitive.name in ("jit", "pjit")]
    return str(names[0]) if names and names[0] else "activation"
  if prim == "max" and any(isinstance(r, Lit) and np.all(np.asarray(r.value)
                                                         == 0)
                           for r in node.inputs):
    return "relu"
  return prim


def _layout_of(graph: Graph, layer: Layer) -> tuple[Optional[int],
                                                    tuple[int, ...]]:
  rank = len(layer.shape)
  node = graph.nodes[layer.node]
  if layer.kind == "conv" and node.primitive == "conv_general_dilated":
    dn = node.eqn.params["dimension_numbers"]
    origin: list[Optional[int]] = list(range(len(graph.avals[
        node.outputs[0]].shape)))
    for j in layer.relayout:
      origin = _relayout(graph.nodes[j], origin)
    feature = origin.index(dn.out_spec[1]) if dn.out_spec[1] in origin else (
        None)
    spatial = tuple(origin.index(a) for a in dn.out_spec[2:] if a in origin)
    return feature, spatial
  return _default_layout(rank)


def _default_layout(rank: int) -> tuple[Optional[int], tuple[int, ...]]:
  if rank == 4:
    return 3, (1, 2)  # NHWC, the library's convention
  if rank >= 2:
    return rank - 1, tuple(range(1, rank - 1))
  return None, ()


def _name_taps(graph: Graph, kind: str) -> None:
  """Names every layer output, activation and max-pooling output."""
  producer: dict[int, str] = {}
  layout: dict[int, tuple[Optional[int], tuple[int, ...]]] = {}
  taps = graph.taps

  def add(name: str, key: int, tap_kind: str, lay) -> str:
    base, k = name, 1
    while name in taps:
      name = f"{base}#{k}"
      k += 1
    shape = tuple(graph.avals[key].shape)
    taps[name] = Tap(name, key, tap_kind, lay[0], lay[1], shape)
    return name

  for i, node in enumerate(graph.nodes):
    if i in graph.layers:
      layer = graph.layers[i]
      lay = _layout_of(graph, layer)
      producer[layer.output] = add(layer.name, layer.output, layer.kind, lay)
      layout[layer.output] = lay
      continue
    if node.role not in ("activation", "nonlinear") or len(node.outputs) != 1:
      continue
    xin = [r for r in node.inputs if isinstance(r, int) and r in layout
           or isinstance(r, int) and r in producer]
    out = node.outputs[0]
    rank = len(graph.avals[out].shape)
    src = xin[0] if xin else None
    lay = layout.get(src) if src is not None else None
    if lay is None or len(graph.avals[src].shape) != rank:
      lay = _default_layout(rank)
    if node.role == "activation":
      act = _activation_name(node)
      graph.activations[i] = act
      base = producer.get(src) or _stack_name(node.stack, kind) or "input"
      producer[out] = add(f"{base}/{act}", out, "activation", lay)
    else:
      where = _stack_name(node.stack, kind)
      if not where:
        continue
      producer[out] = add(where, out, "nonlinear", lay)
    layout[out] = lay
