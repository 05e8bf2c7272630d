"""What a run leaves behind: results.json, results.md and the figures.

`settings.json` records what the journal's lines were computed under (the
protocol, the model, the data's source and seed, each variant's options); a
re-run into the same folder under other settings is refused rather than
mixing lines of two protocols.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any, Sequence

import jax
import numpy as np

from sr_jax import files
from sr_jax.evaluation import aggregate, figures as figures_lib
from sr_jax.evaluation.measures import uniform_noise_reference

RESULTS_JSON, RESULTS_MD, SETTINGS = ("results.json", "results.md",
                                      "settings.json")
FIGURE, GALLERY = "evaluation.png", "evaluation_gallery.png"
GALLERY_IMAGES = 5
GALLERY_DIR = "gallery"  # the gallery images' planes, one .npz per variant
# Li et al. (2017), Table 1: SSIM(SR) / SSIM(LRP) on 500 ImageNet images.
PAPER_SSIM_RATIO = {"value": 1.70, "images": 500, "dataset": "ImageNet",
                    "model": "AlexNet"}


def settings(stages: Sequence[Any], protocol: Any,
             todo: Sequence[Any]) -> dict[str, Any]:
  """The settings that the journal's lines depend on."""
  out = {"protocol": protocol.describe(stages[0].data.images.shape[1:3]),
         "stages": {}, "variants": {v.name: v.describe() for v in todo}}
  for s in stages:
    info = {k: v for k, v in s.data.info.items() if k != "n"}
    out["stages"][s.name] = {"model": s.model_info, "data": info}
  return out


def _comparable(d: dict[str, Any]) -> dict[str, Any]:
  """The parts of `settings` that must agree between runs (variants may be
  added or left out; their options must not change)."""
  protocol = {k: v for k, v in (d.get("protocol") or {}).items()
              if k != "batch_size"}  # batching changes no result
  return {"protocol": protocol, "stages": d.get("stages")}


def check_settings(out: Path, current: dict[str, Any]) -> None:
  """Refuses a journal written under other settings; records them if new.

  Raises:
    ValueError: naming the settings that differ.
  """
  path = out / SETTINGS
  if path.exists():
    old = json.loads(path.read_text())
    a, b = _comparable(old), _comparable(current)
    diff = sorted(f"{part}.{k}" for part in a for k in
                  set(a[part] or {}) | set(b[part] or {})
                  if (a[part] or {}).get(k) != (b[part] or {}).get(k))
    opts = sorted(k for k, v in current["variants"].items()
                  if k in old.get("variants", {}) and old["variants"][k] != v)
    if diff or opts:
      raise ValueError(
          f"`out` (={str(out)!r}) holds results computed under other "
          f"settings ({', '.join(diff + [f'variants.{k}' for k in opts])}); "
          "use another folder or delete it.")
    current = {**current, "variants": {**old.get("variants", {}),
                                       **current["variants"]}}
  files.atomic_write(path, json.dumps(current, indent=1).encode())


def _gallery_path(out: Path, variant: str) -> Path:
  return out / GALLERY_DIR / (variant.replace(":", "_") + ".npz")


def save_gallery_planes(out: Path, variant: str, indices: np.ndarray,
                        planes: np.ndarray) -> None:
  """Keeps the planes of the gallery's images (the first GALLERY_IMAGES)."""
  keep = np.flatnonzero(np.asarray(indices) < GALLERY_IMAGES)
  if keep.size:
    (out / GALLERY_DIR).mkdir(exist_ok=True)
    files.save_npz(_gallery_path(out, variant),
                indices=np.asarray(indices)[keep], planes=planes[keep])


def _gallery_planes(out: Path, names: Sequence[str],
                    rows: np.ndarray) -> dict[str, np.ndarray]:
  """The kept planes of `rows` for each variant that has all of them."""
  found = {}
  for v in names:
    path = _gallery_path(out, v)
    if path.is_file():
      with np.load(path) as z:
        where = {int(i): k for k, i in enumerate(z["indices"])}
        if all(int(r) in where for r in rows):
          found[v] = z["planes"][[where[int(r)] for r in rows]]
  return found


def _machine() -> dict[str, Any]:
  load = os.getloadavg() if hasattr(os, "getloadavg") else None
  return {"platform": platform.platform(), "cpus": os.cpu_count(),
          "load_average": None if load is None else [round(v, 2)
                                                     for v in load],
          "jax": jax.__version__, "device": str(jax.devices()[0])}


def _timing(records: Sequence[dict], names: Sequence[str]) -> dict[str, Any]:
  out = {}
  for v in names:
    rows = [r for r in records if r.get("variant") == v
            and r.get("status") == "ok"]
    if rows:
      out[v] = {"seconds": float(sum(r.get("seconds", 0.0) for r in rows)),
                "map_seconds": float(sum(r.get("seconds_map", 0.0)
                                         for r in rows)),
                "cpu_seconds": float(sum(r.get("cpu_seconds", 0.0)
                                         for r in rows)),
                "lines": len(rows)}
  return out


def write(out: Path, stages: Sequence[Any], todo: Sequence[Any],
          records: Sequence[dict], protocol: Any, *, settings: dict,
          notes: Sequence[str], seconds: float, figures: bool) -> Path:
  """Aggregates the records and writes results.json, results.md, figures.

  Returns:
    The path of results.json.
  """
  names = [v.name for v in todo]
  shape = stages[0].data.images.shape[1:3]
  refs = uniform_noise_reference(shape)
  opts = dict(seed=protocol.bootstrap_seed, resamples=protocol.resamples,
              level=protocol.level)
  keys = {(s.name, v, i) for s in stages for v in names for i in s.data.ids}
  mine = [r for r in records
          if (r.get("stage"), r.get("variant"), r.get("image")) in keys]
  table = aggregate.scores(mine, names, references=refs, **opts)
  main = stages[0]
  sr_lrp = table.get("sr:lrp", {}).get("ssim_ratio")
  result = {
      "format": "sr_jax.evaluation/1",
      "dataset": {s.name: {**s.data.info, "n": len(s.data)} for s in stages},
      "held_out_seed": main.data.info.get("seed"),
      "models": {s.name: s.model_info for s in stages},
      "model_accuracy": {
          s.name: _accuracy(mine, s.name) for s in stages},
      "protocol": settings["protocol"],
      "bootstrap": {"seed": protocol.bootstrap_seed,
                    "resamples": protocol.resamples, "level": protocol.level,
                    "method": "percentile"},
      "references": {"uniform_noise": refs,
                     "paper_ssim_ratio": {**PAPER_SSIM_RATIO,
                                          "ours": sr_lrp}},
      "measures": [{"key": m.key, "title": m.title, "better": m.better,
                    "stage": m.stage} for m in aggregate.MEASURES],
      "methods": [v.describe() for v in todo],
      "notes": list(notes),
      "scores": table,
      "curves": aggregate.curves(mine, names, **opts),
      "timing": {"seconds_this_run": seconds,
                 "per_variant": _timing(mine, names),
                 "machine": _machine()},
  }
  path = out / RESULTS_JSON
  files.atomic_write(path, json.dumps(result, indent=1).encode())
  md = _markdown_header(result, main) + aggregate.markdown(table, names)
  files.atomic_write(out / RESULTS_MD, md.encode())
  if figures:
    files.save_png(out / FIGURE, figures_lib.scores_figure(table, names))
    rows = np.arange(min(GALLERY_IMAGES, len(main.data)))
    files.save_png(out / GALLERY, figures_lib.gallery(
        main, todo, rows, planes=_gallery_planes(out, names, rows)))
  return path


def _accuracy(records: Sequence[dict], stage: str) -> Any:
  """The model's accuracy on the stage's labelled images (None: no labels)."""
  seen = {r["image"]: r["predicted"] == r["label"] for r in records
          if r.get("stage") == stage and r.get("label") is not None}
  return None if not seen else float(np.mean(list(seen.values())))


def _markdown_header(result: dict, main: Any) -> str:
  info = main.data.info
  p = result["protocol"]
  return (f"## Explanation evaluation\n\n{len(main.data)} images "
          f"({info.get('source')}, seed {info.get('seed')}), model "
          f"{result['models']['main']['arch']}; mean [95% bootstrap CI, "
          f"{result['bootstrap']['resamples']} resamples, seed "
          f"{result['bootstrap']['seed']}]. Pointing tolerance "
          f"{p['pointing_tolerance_px']:.2f} px; IoU at "
          f"{', '.join(f'{q:g}' for q in p['levels'])} of the map's mass; "
          f"region perturbation of {p['patch']}-px squares, {p['steps']} "
          f"steps, baseline {p['baseline']!r}; class sensitivity and "
          f"randomisation on the first {p['sanity_n']} images.\n\n")
