"""The maps an evaluation scores: every registered method and its variants.

A *variant* is one way of making a map, named as the tables name it:

* `"<method>"`: a method of `sr_jax.attribution.METHODS`, with its own
  default options (plus the few `METHOD_OPTIONS` below);
* `"sr:<method>"`: the SR map of that method's map (context-aware saliency
  of its relevance image, `sr_jax.sr`);
* `"meta:<method>"`: meta-saliency of the method
  (`sr_jax.attribution.meta`, Rebuffi et al. 2020), where that wrapper
  exists;
* `"smooth:<method>"`: the method averaged over noisy inputs
  (`sr_jax.attribution.smooth`, Smilkov et al. 2017), for methods that are
  not averages over many inputs already (`AVERAGING`);
* `"random"`: uniform noise, a fresh draw for every call; the chance level
  every measure is read against.

Methods that take a `background` (Deep SHAP) get the run's background set,
when there is one: without it Deep SHAP's baseline is one black image (the
zero input, the training mean) and it equals DeepLIFT.

Methods are looked up by name when the run starts, so a method registered by
any module that was imported is picked up. A name that is not there, or a
method with a required option the evaluation cannot fill in, is skipped with
a logged line.

Examples:
  >>> [v.name for v in resolve("gradient,sr:gradient", seed=0)]
  ['gradient', 'sr:gradient']
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from typing import Any, Callable, Mapping, Optional, Sequence, Union

from sr_jax import attribution

KINDS = ("map", "sr", "meta", "smooth", "random")
RANDOM = "random"
# Options the evaluation sets for a method: LRP with the SR paper's rules, so
# that "lrp", "sr:lrp" and the SSIM ratio follow Li et al. (2017).
METHOD_OPTIONS: dict[str, dict[str, Any]] = {"lrp": {"composite": "sr_paper"}}
# Methods that already average over many inputs: smoothing them multiplies
# their cost by the sample count for little change, so "all" leaves it out.
AVERAGING = ("smoothgrad", "integrated_gradients", "deepshap",
             "expected_gradients")
# Options filled in when a method requires them (keyword-only, no default).
_FILLABLE = ("key",)


@dataclasses.dataclass(frozen=True)
class Variant:
  """One way of making a map.

  Attributes:
    name: the row name, e.g. "lrp", "sr:lrp", "meta:gradient", "random".
    kind: one of `KINDS`.
    method: the registered base method's name ("" for "random").
    fn: the method function to call (`fn(model, variables, x, target=...,
      **options)`); for "sr" the base method's, None for "random".
    options: the options `fn` is called with, as sorted pairs.
    background: how many background images `fn` has bound (0: none).
  """

  name: str
  kind: str
  method: str
  fn: Optional[Callable[..., Any]]
  options: tuple = ()
  background: int = 0

  def describe(self) -> dict[str, Any]:
    """A JSON-friendly description (for results.json)."""
    d = {"name": self.name, "kind": self.kind, "method": self.method,
         "options": {k: v if isinstance(v, (str, int, float, bool))
                     else repr(v) for k, v in self.options}}
    if self.background:
      d["background_images"] = self.background
    return d


def _parameters(fn: Callable[..., Any]) -> Mapping[str, inspect.Parameter]:
  """`fn`'s parameters by name; none when Python cannot tell."""
  try:
    return inspect.signature(fn).parameters
  except (TypeError, ValueError):
    return {}


def _takes_background(fn: Callable[..., Any]) -> bool:
  return "background" in _parameters(fn)


def _required(fn: Callable[..., Any]) -> list[str]:
  """The keyword options of `fn` that have no default."""
  return [p.name for p in _parameters(fn).values()
          if p.kind == p.KEYWORD_ONLY and p.default is p.empty
          and p.name != "target"]


def _options(name: str, fn: Callable[..., Any], seed: int
             ) -> tuple[Optional[dict[str, Any]], str]:
  """The options to call `fn` with, or None and the reason it cannot run."""
  opts = dict(METHOD_OPTIONS.get(name, {}))
  missing = [p for p in _required(fn) if p not in opts]
  unfillable = [p for p in missing if p not in _FILLABLE]
  if unfillable:
    return None, f"needs option(s) {', '.join(unfillable)}"
  opts.update({p: seed for p in missing})
  return opts, ""


def _wrapper(kind: str) -> Optional[Callable[..., Any]]:
  """`sr_jax.attribution.meta` or `.smooth`, when the library has it."""
  return getattr(attribution, kind, None)


def _build(token: str, seed: int, background: Any = None
           ) -> tuple[Optional[Variant], str]:
  """The variant named `token`, or None and why it is skipped."""
  if token == RANDOM:
    return Variant(RANDOM, "random", "", None), ""
  kind, _, name = token.rpartition(":")
  kind = kind or "map"
  if kind not in ("map", "sr", "meta", "smooth"):
    return None, (f"unknown prefix {kind!r} (known: sr:, meta:, smooth:)")
  if name not in attribution.METHODS:
    return None, "not a registered method"
  base = attribution.METHODS[name]
  opts, why = _options(name, base, seed)
  if opts is None:
    return None, why
  n_bg = 0
  if background is not None and _takes_background(base):
    base = functools.update_wrapper(
        functools.partial(base, background=background), base)
    n_bg = len(background)
  if kind in ("map", "sr"):
    return Variant(token, kind, name, base, tuple(sorted(opts.items())),
                   n_bg), ""
  wrap = _wrapper(kind)
  if wrap is None:
    return None, f"sr_jax.attribution has no `{kind}` wrapper"
  wrap_opts = {"key": seed} if "key" in _required(wrap) else {}
  try:
    fn = wrap(base, **wrap_opts)
  except (TypeError, ValueError) as e:
    return None, f"`{kind}({name})` failed: {e}"
  more, why = _options(name, fn, seed)
  if more is None:
    return None, why
  opts.update(more)
  return Variant(token, kind, name, fn, tuple(sorted(opts.items())), n_bg), ""


def all_names() -> list[str]:
  """Every variant "all" means now: each registered method, its SR map, its
  meta- and smoothed versions where the wrappers exist, and "random"."""
  names = sorted(attribution.METHODS)
  out = list(names) + [f"sr:{n}" for n in names]
  if _wrapper("meta") is not None:
    out += [f"meta:{n}" for n in names]
  if _wrapper("smooth") is not None:
    out += [f"smooth:{n}" for n in names if n not in AVERAGING]
  return out + [RANDOM]


def resolve(methods: Union[str, Sequence[str]], *, seed: int,
            log: Callable[[str], None] = lambda line: None,
            background: Any = None) -> list[Variant]:
  """The variants named by `methods`, in order, each once.

  Args:
    methods: "all", or names separated by commas (or a sequence of names):
      method names, "sr:<method>", "meta:<method>", "smooth:<method>",
      "random"; "all" may appear among them.
    seed: the int seed given to methods that need a PRNG key.
    log: receives one line for each name that is skipped, and why.
    background: None, or normalized (B, H, W, C) baselines bound to every
      method that takes a `background` (Deep SHAP).

  Returns:
    The variants that can run.

  Raises:
    ValueError: when `methods` names nothing, or nothing that can run.
  """
  tokens = ([t.strip() for t in methods.split(",")]
            if isinstance(methods, str) else [str(t).strip() for t in methods])
  tokens = [t for t in tokens if t]
  if not tokens:
    raise ValueError(f"`methods` (={methods!r}) names no method.")
  expanded: list[str] = []
  for t in tokens:
    for name in (all_names() if t == "all" else [t]):
      if name not in expanded:
        expanded.append(name)
  out = []
  for name in expanded:
    variant, why = _build(name, seed, background)
    if variant is None:
      log(f"skipped method {name!r}: {why}")
    else:
      out.append(variant)
  if not out:
    raise ValueError(
        f"`methods` (={methods!r}) leaves no method that can run; registered "
        f"methods: {', '.join(sorted(attribution.METHODS))}.")
  return out
