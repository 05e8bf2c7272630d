"""The settings of a batch run: option text, weights, and `run.json`.

`run.json` in the output folder keeps the configuration of the run that
made it; a re-run of the same folder with another model, composite, weights
or options is refused, so records never mix configurations. When a run
finishes, process 0 adds the run's "summary" (the figures of its summary
line, over every process) to it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Optional

from sr_jax import files
from sr_jax.runner.journal import CONFIG
from sr_jax.models.loading import resolve_weights  # pylint: disable=unused-import

SUMMARY_KEY = "summary"


def parse_options(text: str) -> dict[str, Any]:
  """A JSON object given on a command line, e.g. '{"max_side": null}'."""
  try:
    value = json.loads(text)
  except ValueError as e:
    raise ValueError(f"`saliency_options` (={text!r}) is not JSON: {e}") from None
  if not isinstance(value, dict):
    raise ValueError(f"`saliency_options` (={text!r}) must be a JSON object.")
  return value


def read_config(out: Path) -> Optional[dict[str, Any]]:
  """The contents of `<out>/run.json`, or None when there is none."""
  path = Path(out) / CONFIG
  if not path.exists():
    return None
  return json.loads(path.read_text(encoding="utf-8"))


def check_config(out: Path, config: Mapping[str, Any]) -> None:
  """Refuses an `out` whose `run.json` holds another configuration.

  Raises:
    ValueError: naming the keys that differ, with both values.
  """
  old = read_config(out)
  if old is None:
    return
  old = {k: v for k, v in old.items() if k != SUMMARY_KEY}
  diff = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
  if diff:
    raise ValueError(
        f"`out` (={str(out)!r}) holds results of another configuration "
        f"(differs in {', '.join(diff)}: was {[old.get(k) for k in diff]}, "
        f"now {[config.get(k) for k in diff]}); use another `out`.")


def write_config(out: Path, config: Mapping[str, Any],
                 summary: Optional[Mapping[str, Any]] = None) -> None:
  """Writes `run.json` (the configuration, and the summary when given)."""
  value = dict(config)
  if summary is not None:
    value[SUMMARY_KEY] = dict(summary)
  files.atomic_write(Path(out) / CONFIG,
                  (json.dumps(value, indent=1) + "\n").encode())
