"""Training the demo network on the synthetic flowers, on the CPU, with optax.

Training images are generated on the fly: step `t` uses samples
`t * batch_size ... (t + 1) * batch_size - 1` of `train_seed`
(`sr_jax.data.synthetic`), so no image is seen twice and a run is reproducible
from its `TrainConfig` alone. A background thread renders the next batch while
the jitted step runs. Test accuracy is measured on images of a different seed
(`eval_seed`), which nothing is ever tuned on.

The class is a pair of colours (the petals' and the centre's) whose single
colours are uniform in every class, so no single colour feature lowers the
loss at first, and plain training sits on a long plateau, as XOR-like tasks
do. Two auxiliary linear heads on the pooled conv features, used in training
only, predict the petals' and the centre's hue (deep supervision, as in Lee
et al., "Deeply-Supervised Nets", AISTATS 2015); the network itself, and the
file saved, are plain `demo_vgg`.

As in the flax examples, this module holds the logic and
`sr_jax.scripts.train_demo` only the flags.

Examples:
  >>> result = train(TrainConfig(steps=20, eval_count=64))  # doctest: +SKIP
  >>> save_weights(result, "weights/demo_vgg.safetensors",
  ...              command="...")  # doctest: +SKIP
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import json
import os
import pathlib
import time
from typing import Any, Callable, Iterator, Optional, Union

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from sr_jax import _deprecation, files
from sr_jax import weights as weights_lib
from sr_jax.data import synthetic
from sr_jax.models import registry
from sr_jax.models.preprocess import normalize
import sr_jax.models.small  # pylint: disable=unused-import  # registers demo_vgg

PathLike = Union[str, os.PathLike]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Everything that decides a training run.

  Attributes:
    arch: registered architecture to train (its preprocessing is used).
    steps: optimisation steps.
    batch_size: images per step.
    learning_rate: peak learning rate of the warmup + cosine schedule.
    warmup_steps: linear warmup from 0 to `learning_rate`; None: 5% of
      `steps`.
    weight_decay: AdamW's decoupled weight decay.
    part_loss: weight of the auxiliary part-hue losses (0 turns them off).
    variant: the dataset's variant, "double" or "single"
      (`sr_jax.data.synthetic.VARIANTS`).
    train_seed: dataset seed of the training images.
    eval_seed: dataset seed of the held-out test images; must differ.
    eval_count: number of test images.
    image_size: image height and width; None: the architecture's input size.
    init_seed: PRNG seed of the initial parameters.
    log_every: steps between progress lines.
  """

  arch: str = "demo_vgg"
  steps: int = 3000
  batch_size: int = 64
  learning_rate: float = 2e-3
  warmup_steps: Optional[int] = None
  weight_decay: float = 1e-4
  part_loss: float = 1.0
  variant: str = "double"
  train_seed: int = synthetic.TRAIN_SEED
  eval_seed: int = synthetic.EVAL_SEED
  eval_count: int = 2000
  image_size: Optional[int] = None
  init_seed: int = 0
  log_every: int = 100

  def __post_init__(self):
    for name in ("steps", "batch_size", "eval_count", "log_every"):
      if getattr(self, name) < 1:
        raise ValueError(f"`{name}` (={getattr(self, name)}) must be >= 1.")
    if self.warmup_steps is not None and not (
        0 <= self.warmup_steps < self.steps):
      raise ValueError(f"`warmup_steps` (={self.warmup_steps}) must be in "
                       f"[0, steps={self.steps}).")
    if self.train_seed == self.eval_seed:
      raise ValueError(f"`eval_seed` (={self.eval_seed}) must differ from "
                       f"`train_seed` (={self.train_seed}): the test images "
                       "must be held out.")

  @property
  def warmup(self) -> int:
    return (self.steps // 20 if self.warmup_steps is None
            else self.warmup_steps)

  @property
  def size(self) -> int:
    return self.image_size or registry.get_arch(self.arch).input_size


@dataclasses.dataclass(frozen=True)
class TrainResult:
  """A trained model and how it did.

  Attributes:
    config: the run's configuration.
    model: the Flax module.
    variables: its trained variables, `{"params": ...}`.
    accuracy: accuracy on `config.eval_count` images of `config.eval_seed`.
    train_accuracy: accuracy on the training batches of the last log window.
    loss: mean training loss over the last log window.
    seconds: wall time of the training loop (evaluation excluded).
  """

  config: TrainConfig
  model: nn.Module
  variables: Any
  accuracy: float
  train_accuracy: float
  loss: float
  seconds: float


def normalise(images: jax.typing.ArrayLike,
              preprocessing: registry.Preprocessing) -> jax.Array:
  """Deprecated: `sr_jax.models.preprocess.normalize(images, preprocessing)`,
  the inference preprocessing's arithmetic, which training uses."""
  _deprecation.warn("`sr_jax.train.normalise`",
                    "`sr_jax.models.preprocess.normalize`")
  return normalize(images, preprocessing)


def _prefetch(fn: Callable[..., Any], args: Iterator[tuple]) -> Iterator[Any]:
  """`fn(*a)` for each `a` in `args`, computing the next one in a thread."""
  with concurrent.futures.ThreadPoolExecutor(1) as pool:
    pending = None
    for a in args:
      future = pool.submit(fn, *a)
      if pending is not None:
        yield pending.result()
      pending = future
    if pending is not None:
      yield pending.result()


def _batches(seed: int, start: int, count: int, batch_size: int, size: int,
             *, parts: bool = False, variant: str = "double"
             ) -> Iterator[tuple[np.ndarray, ...]]:
  """Consecutive batches of samples `start .. start + count - 1` of `seed`.

  Each is `(images, labels, masks)`, or with `parts`, `(images, labels,
  petal_hues, centre_hues)`.
  """

  def batch(i: int, n: int):
    images, labels, masks = synthetic.make_batch(seed, i, n, size=size,
                                                 variant=variant)
    if not parts:
      return images, labels, masks
    return (images, labels, *synthetic.part_hues(seed, i, n, variant=variant))

  return _prefetch(batch, ((i, min(batch_size, start + count - i))
                           for i in range(start, start + count, batch_size)))


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
  """AdamW with linear warmup and cosine decay, after global-norm clipping."""
  schedule = optax.warmup_cosine_decay_schedule(
      0.0, config.learning_rate, config.warmup, config.steps,
      end_value=0.01 * config.learning_rate)
  return optax.chain(optax.clip_by_global_norm(1.0),
                     optax.adamw(schedule, weight_decay=config.weight_decay))


def logits_and_pooled(model: nn.Module, variables: Any,
                      x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The model's logits and its flattened `avgpool` output, in one pass."""
  logits, state = model.apply(
      variables, x, capture_intermediates=lambda m, _: m.name == "avgpool",
      mutable=["intermediates"])
  pooled = state["intermediates"]["avgpool"]["__call__"][0]
  return logits, pooled.reshape(pooled.shape[0], -1)


def init_train_params(model: nn.Module, config: TrainConfig) -> dict[str, Any]:
  """`{"model": the model's params, "parts": the auxiliary heads (zeros)}`."""
  variables = registry.init_params(
      model, jax.random.PRNGKey(config.init_seed), config.size)
  x = jax.ShapeDtypeStruct((1, config.size, config.size, 3), jnp.float32)
  _, pooled = jax.eval_shape(functools.partial(logits_and_pooled, model),
                             variables, x)
  k = 2 * synthetic.NUM_HUES
  return {"model": variables["params"],
          "parts": {"kernel": jnp.zeros((pooled.shape[1], k), jnp.float32),
                    "bias": jnp.zeros((k,), jnp.float32)}}


def make_train_step(model: nn.Module, tx: optax.GradientTransformation,
                    preprocessing: registry.Preprocessing, part_loss: float):
  """A jitted `step(params, opt_state, images, labels, petal, centre)`.

  Args:
    model: the network.
    tx: the optimizer.
    preprocessing: how uint8 images become the model's input.
    part_loss: weight of the auxiliary part-hue losses.

  Returns:
    A function returning `(params, opt_state, loss, part_loss, accuracy)`
    (the losses are the class's and the parts').
  """
  ce = optax.softmax_cross_entropy_with_integer_labels

  def loss_fn(params, x, labels, petal, centre):
    logits, pooled = logits_and_pooled(model, {"params": params["model"]}, x)
    hues = pooled @ params["parts"]["kernel"] + params["parts"]["bias"]
    n = synthetic.NUM_HUES
    parts = ce(hues[:, :n], petal).mean() + ce(hues[:, n:], centre).mean()
    loss = ce(logits, labels).mean()
    return loss + part_loss * parts, (loss, parts, logits)

  @jax.jit
  def step(params, opt_state, images, labels, petal, centre):
    x = normalize(images, preprocessing)
    grads, (loss, parts, logits) = jax.grad(loss_fn, has_aux=True)(
        params, x, labels, petal, centre)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    accuracy = jnp.mean((jnp.argmax(logits, -1) == labels).astype(jnp.float32))
    return params, opt_state, loss, parts, accuracy

  return step


def evaluate(model: nn.Module, variables: Any, *, arch: str = "demo_vgg",
             seed: int = synthetic.EVAL_SEED, count: int = 2000,
             size: Optional[int] = None, batch_size: int = 250,
             variant: str = "double") -> float:
  """Accuracy of `model` on samples `0 .. count - 1` of dataset `seed`.

  Args:
    model: the Flax module.
    variables: its variables.
    arch: architecture whose preprocessing to apply.
    seed: dataset seed (the held-out `EVAL_SEED` by default).
    count: number of images.
    size: image size; None: the architecture's input size.
    batch_size: images per forward pass.
    variant: the dataset's variant ("double" or "single").

  Returns:
    The fraction of images whose top logit is the true class.
  """
  spec = registry.get_arch(arch)
  predict = jax.jit(lambda v, im: jnp.argmax(
      model.apply(v, normalize(im, spec.preprocessing)), -1))
  correct = 0
  for images, labels, _ in _batches(seed, 0, count, batch_size,
                                    size or spec.input_size, variant=variant):
    correct += int(np.sum(np.asarray(predict(variables, images)) == labels))
  return correct / count


def _duration(seconds: float) -> str:
  m, s = divmod(int(round(seconds)), 60)
  return f"{m}m{s:02d}s"


def train(config: TrainConfig = TrainConfig(), *,
          log: Callable[[str], None] = print) -> TrainResult:
  """Trains `config.arch` from scratch and evaluates it on held-out images.

  Args:
    config: the run's settings.
    log: receives one progress line every `config.log_every` steps (step,
      loss, accuracy, images/s, ETA) and a summary line.

  Returns:
    A `TrainResult` with the trained variables and the test accuracy.
  """
  # optax's bias correction raises a float by an int32 step count, which
  # JAX's strict dtype promotion (as our tests set it) refuses; training
  # always runs under standard promotion.
  with jax.numpy_dtype_promotion("standard"):
    return _train(config, log)


def _train(config: TrainConfig, log: Callable[[str], None]) -> TrainResult:
  """`train` without the promotion context."""
  spec = registry.get_arch(config.arch)
  model = spec.module()
  params = init_train_params(model, config)
  tx = make_optimizer(config)
  opt_state = tx.init(params)
  step_fn = make_train_step(model, tx, spec.preprocessing, config.part_loss)
  b, window = config.batch_size, []
  loss = accuracy = float("nan")
  start = tick = time.perf_counter()
  batches = _batches(config.train_seed, 0, config.steps * b, b, config.size,
                     parts=True, variant=config.variant)
  for t, batch in enumerate(batches, 1):
    params, opt_state, *stats = step_fn(params, opt_state, *batch)
    window.append(stats)
    if t % config.log_every == 0 or t == config.steps:
      loss, parts, accuracy = (
          float(v) for v in np.mean(jax.device_get(window), 0))
      now = time.perf_counter()
      rate = len(window) * b / (now - tick)
      log(f"step {t}/{config.steps}  loss {loss:.4f}  part loss {parts:.4f}  "
          f"acc {accuracy:.3f}  {rate:.0f} img/s  "
          f"ETA {_duration((config.steps - t) * b / rate)}")
      window, tick = [], now
  seconds = time.perf_counter() - start
  variables = {"params": params["model"]}
  test = evaluate(model, variables, arch=config.arch, seed=config.eval_seed,
                  count=config.eval_count, size=config.size,
                  variant=config.variant)
  log(f"trained {config.steps} steps in {_duration(seconds)}; test accuracy "
      f"{test:.4f} on {config.eval_count} images of seed {config.eval_seed}")
  return TrainResult(config, model, variables, test, accuracy, loss, seconds)


def update_manifest(path: PathLike) -> str:
  """Records `path`'s sha256 in the `MANIFEST` beside it.

  The manifest has `sha256sum` lines, `<sha256>  <file name>`; an older line
  for the same file is replaced, the others are kept.

  Returns:
    The sha256.
  """
  path = pathlib.Path(path)
  digest, manifest = weights_lib.sha256(path), path.parent / "MANIFEST"
  lines = manifest.read_text().splitlines() if manifest.exists() else []
  lines = [ln for ln in lines if ln.split("  ", 1)[-1] != path.name]
  lines.append(f"{digest}  {path.name}")
  files.atomic_write(manifest, ("\n".join(lines) + "\n").encode())
  return digest


def save_weights(result: TrainResult, path: PathLike, *,
                 command: str) -> str:
  """Writes the trained weights with their provenance, and their sha256.

  The metadata (besides what `sr_jax.weights.save` writes) holds the class
  names, both seeds, the test accuracy, the step count, the image size, the
  whole config and `command`. Timings are left out, so a rerun on the same
  machine and versions writes the same bytes.

  Args:
    result: what `train` returned.
    path: the safetensors file to write.
    command: the command line that made it.

  Returns:
    The file's sha256, also recorded in `MANIFEST` beside it.
  """
  c = result.config
  metadata = {
      "classes": json.dumps(list(synthetic.class_names(c.variant))),
      "dataset": "sr_jax.data.synthetic",
      "train_seed": str(c.train_seed),
      "eval_seed": str(c.eval_seed),
      "eval_count": str(c.eval_count),
      "accuracy": f"{result.accuracy:.4f}",
      "steps": str(c.steps),
      "image_size": str(c.size),
      "command": command,
      "config": json.dumps(dataclasses.asdict(c)),
      "versions": json.dumps({"jax": jax.__version__, "flax": flax.__version__,
                              "optax": optax.__version__}),
  }
  weights_lib.save(path, result.variables, arch=c.arch, metadata=metadata)
  return update_manifest(path)
