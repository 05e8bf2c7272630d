"""From per-image records to scores with 95% bootstrap intervals, and tables.

Every score is the mean over images (the pointing game: the mean over
classes of hits / (hits + misses), Zhang et al. 2016) with a percentile
bootstrap interval (`sr_jax.metrics.bootstrap_ci`, one seed for the whole
run, recorded in results.json). For the pointing game the bootstrap
resamples images and takes the class mean of each resample (over the
classes it holds), so its interval stays within [0, 1].
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterable, Optional, Sequence

import jax
import numpy as np

from sr_jax import metrics


@dataclasses.dataclass(frozen=True)
class Measure:
  """One column of the tables and one panel of the figure.

  Attributes:
    key: the record field, e.g. "pointing".
    title: the column title.
    better: "higher" or "lower".
    stage: which pass it comes from ("main" or "single").
    field: the record field read (default `key`).
    chance: the record field of its chance level, or a fixed reference.
  """

  key: str
  title: str
  better: str
  stage: str = "main"
  field: Optional[str] = None
  chance: Optional[str] = None

  @property
  def source(self) -> str:
    return self.field or self.key


MEASURES = (
    Measure("pointing", "pointing game", "higher", chance="pointing_chance"),
    Measure("iou_auc", "IoU AUC (double)", "higher", chance="iou_auc_chance"),
    Measure("iou_auc_single", "IoU AUC (single)", "higher", stage="single",
            field="iou_auc", chance="iou_auc_chance"),
    Measure("pointing_single", "pointing (single)", "higher", stage="single",
            field="pointing", chance="pointing_chance"),
    Measure("relevance_mass", "relevance mass", "higher",
            chance="relevance_mass_chance"),
    Measure("rank_accuracy", "rank accuracy", "higher",
            chance="rank_accuracy_chance"),
    Measure("segmentation_iou", "GrabCut IoU", "higher",
            chance="segmentation_iou_chance"),
    Measure("ssim_saliency", "SSIM to image saliency", "higher",
            chance="ssim_saliency_chance"),
    Measure("ssim_ratio", "SSIM ratio (SR / map)", "higher"),
    Measure("aopc", "AOPC (MoRF)", "higher", chance="aopc_random"),
    Measure("class_sensitivity", "class sensitivity", "lower",
            chance="class_sensitivity_chance"),
    Measure("randomization_cascading_spearman", "cascading rand. (Spearman)",
            "lower", chance="randomization_cascading_spearman_chance"),
    Measure("randomization_independent_spearman",
            "independent rand. (Spearman)", "lower",
            chance="randomization_independent_spearman_chance"),
    Measure("randomization_cascading_ssim", "cascading rand. (SSIM)", "lower",
            chance="randomization_cascading_ssim_chance"),
    Measure("randomization_independent_ssim", "independent rand. (SSIM)",
            "lower", chance="randomization_independent_ssim_chance"),
    Measure("gini", "Gini", "higher", chance="gini_reference"),
    Measure("entropy", "entropy (nats)", "lower", chance="entropy_reference"),
)
TABLES = (
    ("Localisation", ("pointing", "iou_auc", "iou_auc_single",
                      "pointing_single", "relevance_mass", "rank_accuracy",
                      "segmentation_iou", "ssim_saliency", "ssim_ratio")),
    ("Faithfulness, sanity and complexity", (
        "aopc", "class_sensitivity", "randomization_cascading_spearman",
        "randomization_independent_spearman", "randomization_cascading_ssim",
        "randomization_independent_ssim", "gini", "entropy")),
)
BY_KEY = {m.key: m for m in MEASURES}


def class_mean(values: np.ndarray, labels: np.ndarray) -> Callable:
  """A `bootstrap_ci` statistic over image indices: the mean over classes
  of each class's mean value (over the classes a resample holds).

  `bootstrap_ci(np.arange(N), statistic=class_mean(values, labels))`
  resamples images and scores each resample by its class mean.
  """
  values, labels = np.asarray(values, np.float64), np.asarray(labels)
  classes = np.unique(labels)

  def statistic(index: np.ndarray, axis: Optional[int] = None) -> np.ndarray:
    idx = np.atleast_2d(np.asarray(index).astype(np.int64))
    v, y = values[idx], labels[idx]
    per = []
    for c in classes:
      inside = y == c
      count = inside.sum(1)
      per.append(np.where(count > 0, (v * inside).sum(1)
                          / np.maximum(count, 1), np.nan))
    out = np.nanmean(np.stack(per, 1), axis=1)
    return out if axis is not None else out[0]

  return statistic


def _ci(values: np.ndarray, seed: int, resamples: int, level: float,
        labels: Optional[np.ndarray] = None) -> dict[str, float]:
  """Mean and interval; with `labels`, the class mean and its interval."""
  if labels is None:
    ci = metrics.bootstrap_ci(values, key=jax.random.key(seed), n=resamples,
                              level=level)
  else:
    ci = metrics.bootstrap_ci(
        np.arange(values.size, dtype=np.float64), key=jax.random.key(seed),
        n=resamples, level=level, statistic=class_mean(values, labels))
  return {"estimate": ci.estimate, "low": ci.low, "high": ci.high,
          "n": int(values.size)}


def score(records: Sequence[dict], measure: Measure, *, seed: int,
          resamples: int = 1000, level: float = 0.95,
          references: Optional[dict[str, float]] = None
          ) -> Optional[dict[str, Any]]:
  """One measure of one variant over its records, or None if none has it.

  Returns:
    {"estimate", "low", "high", "n", "chance"} (chance: the mean chance
    level over the same images, or the fixed reference; None if none), and
    "std" (over images) for class sensitivity.
  """
  rows = [r for r in records if r.get(measure.source) is not None
          and np.isfinite(r[measure.source])]
  if not rows:
    return None
  values = np.array([r[measure.source] for r in rows], np.float64)
  labels = (np.array([r["target_class"] for r in rows])
            if measure.source == "pointing" else None)
  out = _ci(values, seed, resamples, level, labels)
  chance = None
  if measure.chance and measure.chance.endswith("_reference"):
    chance = (references or {}).get(measure.chance[:-len("_reference")])
  elif measure.chance:
    c = np.array([r.get(measure.chance, np.nan) for r in rows], np.float64)
    if labels is not None:
      chance = float(class_mean(c, labels)(np.arange(c.size)))
    elif np.isfinite(c).any():
      chance = float(np.nanmean(c))
  out["chance"] = chance
  if measure.key == "class_sensitivity":
    out["std"] = float(np.std(values))
  return out


def mean_curve(records: Sequence[dict], field: str, *, seed: int,
               resamples: int = 1000, level: float = 0.95,
               sub: Optional[str] = None, intervals: bool = True
               ) -> Optional[dict[str, list]]:
  """The per-step mean of a curve field (and its intervals), or None."""
  rows = [r[field] if sub is None else r[field][sub]
          for r in records if r.get(field) is not None]
  if not rows:
    return None
  a = np.array(rows, np.float64)
  if not intervals:
    return {"mean": a.mean(0).tolist()}
  cis = [_ci(a[:, j], seed, resamples, level) for j in range(a.shape[1])]
  return {"mean": [c["estimate"] for c in cis],
          "low": [c["low"] for c in cis], "high": [c["high"] for c in cis]}


def scores(records: Iterable[dict], variants: Sequence[str], *, seed: int,
           resamples: int = 1000, level: float = 0.95,
           references: Optional[dict[str, float]] = None
           ) -> dict[str, dict[str, Any]]:
  """{variant: {measure key: score}} over the "ok" records of each stage."""
  by: dict[tuple[str, str], list[dict]] = {}
  for r in records:
    if r.get("status") == "ok":
      by.setdefault((r["stage"], r["variant"]), []).append(r)
  out: dict[str, dict[str, Any]] = {}
  for v in variants:
    row = {}
    for m in MEASURES:
      s = score(by.get((m.stage, v), []), m, seed=seed, resamples=resamples,
                level=level, references=references)
      if s is not None:
        row[m.key] = s
    out[v] = row
  return out


def curves(records: Iterable[dict], variants: Sequence[str], *, seed: int,
           resamples: int = 1000, level: float = 0.95) -> dict[str, Any]:
  """Mean IoU, perturbation and randomisation curves of each variant."""
  by: dict[str, list[dict]] = {}
  for r in records:
    if r.get("status") == "ok" and r["stage"] == "main":
      by.setdefault(r["variant"], []).append(r)
  opts = dict(seed=seed, resamples=resamples, level=level)
  out = {}
  for v in variants:
    rows = by.get(v, [])
    entry = {"iou": mean_curve(rows, "iou", **opts),
             "perturbation": mean_curve(rows, "curve", intervals=False,
                                        **opts),
             "perturbation_random": mean_curve(rows, "random_curve",
                                               intervals=False, **opts)}
    for mode in ("cascading", "independent"):
      for sim in ("spearman", "ssim"):
        entry[f"randomization_{mode}_{sim}"] = mean_curve(
            rows, f"randomization_{mode}", sub=sim, **opts)
    out[v] = {k: c for k, c in entry.items() if c is not None}
  return out


def _cell(s: Optional[dict[str, Any]], digits: int = 3) -> str:
  if s is None:
    return "–"
  return (f"{s['estimate']:.{digits}f} [{s['low']:.{digits}f}, "
          f"{s['high']:.{digits}f}]")


def markdown(table: dict[str, dict[str, Any]], variants: Sequence[str]
             ) -> str:
  """The tables as Markdown: one row per variant, "mean [95% CI]" cells,
  and a last row with each measure's chance level (of the "random" map's
  images where it ran, else the first variant's)."""
  parts = []
  for title, keys in TABLES:
    keys = [k for k in keys if any(k in table.get(v, {}) for v in variants)]
    if not keys:
      continue
    head = ["map"] + [f"{BY_KEY[k].title} "
                      f"{'↑' if BY_KEY[k].better == 'higher' else '↓'}"
                      for k in keys]
    lines = [f"### {title}", "", "| " + " | ".join(head) + " |",
             "|" + "---|" * len(head)]
    for v in variants:
      lines.append("| " + " | ".join(
          [f"`{v}`"] + [_cell(table.get(v, {}).get(k)) for k in keys]) + " |")
    chance = []
    for k in keys:
      src = [table.get(v, {}).get(k) for v in ("random", *variants)]
      c = next((s["chance"] for s in src if s and s.get("chance") is not None),
               None)
      chance.append("–" if c is None else f"{c:.3f}")
    lines.append("| *chance* | " + " | ".join(chance) + " |")
    parts.append("\n".join(lines))
  return "\n\n".join(parts) + "\n"
