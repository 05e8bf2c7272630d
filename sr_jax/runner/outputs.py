"""The files a batch run writes for one image, and the figures of its record.

For an image named `<name>` (its path relative to the input folder) the
runner writes `<name>.npz` (every map of its `SRResult`), the panel
`<name>.png` and, for the HTML report, a small copy of the panel
`<name>.thumb.jpg`, each to a temporary name renamed into place
(`sr_jax.files.atomic_write`).

Why a thumbnail file rather than the PNG scaled down by CSS: a panel is six
224-px tiles, 696x575 pixels and about 370 kB as PNG, and a report of a few
hundred images would make the browser fetch and decode all of them at full
size. Its 320-px JPEG is about 25 kB (15x less), so the page stays quick;
the card links the full PNG. A record without one (from an older run) shows
the PNG.
"""

from __future__ import annotations

import io as pyio
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
from PIL import Image

from sr_jax import files, metrics, sr, viz

THUMBNAIL_SUFFIX = ".thumb.jpg"
THUMBNAIL_WIDTH = 320


def thumbnail(panel: Image.Image, *, width: int = THUMBNAIL_WIDTH) -> bytes:
  """A JPEG of `panel` at most `width` pixels wide (never enlarged)."""
  if width < 1:
    raise ValueError(f"`width` (={width}) must be >= 1 pixel.")
  small = panel.convert("RGB")
  if small.width > width:
    height = max(1, round(small.height * width / small.width))
    small = small.resize((width, height), Image.Resampling.LANCZOS)
  buffer = pyio.BytesIO()
  small.save(buffer, format="JPEG", quality=85)
  return buffer.getvalue()


def write_outputs(out: Path, name: str, result: sr.SRResult, *,
                  class_names: Optional[Sequence[str]] = None,
                  true_label: Any = None,
                  with_thumbnail: bool = False) -> dict[str, float]:
  """Writes `<name>.npz` (every map) and the panel `<name>.png`, atomically.

  Args:
    out: the output folder.
    name: the files' name before ".npz" / ".png" (may hold subfolders).
    result: the image's `SRResult`.
    class_names: class names for the panel's titles.
    true_label: ground truth shown on the panel (index or text).
    with_thumbnail: also write `<name>.thumb.jpg` (see the module docstring).

  Returns:
    Seconds spent drawing the panel ("panel") and writing the files ("write").
  """
  npz, png = Path(out) / f"{name}.npz", Path(out) / f"{name}.png"
  npz.parent.mkdir(parents=True, exist_ok=True)
  t0 = time.perf_counter()
  panel = viz.panel(result.image, result, class_names=class_names,
                    true_label=true_label, title=name)
  t1 = time.perf_counter()
  files.save_npz(npz, **result.arrays())
  files.save_png(png, panel)
  if with_thumbnail:
    files.atomic_write(Path(out) / f"{name}{THUMBNAIL_SUFFIX}",
                       thumbnail(panel))
  return {"panel": t1 - t0, "write": time.perf_counter() - t1}


def ssim_figures(result: sr.SRResult) -> Optional[dict[str, Optional[float]]]:
  """`sr_jax.metrics.ssim_ratio` of a result, for JSON (None: not finite),
  or None when the result has no image saliency."""
  if result.image_saliency is None:
    return None
  s = metrics.ssim_ratio(result.relevance, result.sr, result.image_saliency)
  return {k: float(v) if np.isfinite(v) else None
          for k, v in s._asdict().items()}


def ok_record(name: str, result: sr.SRResult, *,
              class_names: Optional[Sequence[str]],
              ssim: Optional[dict[str, Optional[float]]],
              timings: dict[str, float],
              with_thumbnail: bool) -> dict[str, Any]:
  """The journal record of an explained image (see `sr_jax.runner.run`)."""
  rec = {
      "file": name, "status": "ok",
      "prediction": {"index": result.target,
                     "name": (None if class_names is None
                              else class_names[result.target]),
                     "probability": result.probability},
      "ssim": ssim, "timings": {k: round(v, 6) for k, v in timings.items()}}
  if with_thumbnail:
    rec["thumbnail"] = f"{name}{THUMBNAIL_SUFFIX}"
  return rec


def failed_record(name: str, stage: str, err: BaseException) -> dict[str, Any]:
  """The journal record of an image that failed at `stage`."""
  return {"file": name, "status": "failed", "stage": stage,
          "reason": f"{type(err).__name__}: {err}"}
