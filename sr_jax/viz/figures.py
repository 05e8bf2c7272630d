"""`show`: a result's panel, or a picture, in a matplotlib figure.

matplotlib is not a dependency of sr_jax: it is imported when `show` is
first called, and its absence is reported with how to install it.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
from PIL import Image

from sr_jax.viz.panels import panel

_DPI = 100


def _pyplot():
  try:
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise ImportError(
        "sr_jax.viz.show draws with matplotlib, which is not installed: "
        "`pip install matplotlib`. Without it, save the picture instead, "
        "e.g. `sr_jax.viz.panel(None, result).save('panel.png')`.") from None
  return plt


def _picture(result_or_image: Any, options: dict[str, Any]) -> np.ndarray:
  """The uint8 pixels to show: a result's panel, or the picture itself."""
  if hasattr(result_or_image, "sr") and hasattr(result_or_image, "logits"):
    return np.asarray(panel(None, result_or_image, **options))
  if options:
    raise ValueError(
        f"`{sorted(options)[0]}` is an option of a result's panel; "
        f"`result_or_image` (type={type(result_or_image).__name__}) is not "
        "an `SRResult`.")
  if isinstance(result_or_image, Image.Image):
    return np.asarray(result_or_image.convert("RGB"))
  a = np.asarray(result_or_image)
  if a.dtype != np.uint8 or not (
      a.ndim == 2 or (a.ndim == 3 and a.shape[-1] in (3, 4))):
    raise ValueError(
        f"`result_or_image` (shape={a.shape}, dtype={a.dtype}) must be an "
        "`SRResult`, a PIL image or a uint8 HxW, HxWx3 or HxWx4 array; "
        "colour a map first, e.g. with `sr_jax.viz.heat` or "
        "`sr_jax.viz.relevance_rgb`.")
  return a


def show(result_or_image: Any, *, ax: Optional[Any] = None,
         **options) -> Any:
  """Draws a result's panel, or a picture, with matplotlib.

  The picture is drawn at one screen pixel per pixel (100 dpi) into a new
  figure, or into `ax`. Notebooks display the figure by themselves; a script
  calls `matplotlib.pyplot.show()`.

  Args:
    result_or_image: an `SRResult` (drawn as `panel(None, result)`), a PIL
      image, or a uint8 HxW, HxWx3 or HxWx4 array.
    ax: a matplotlib `Axes` to draw into; None makes a new figure.
    **options: keyword options of `panel` for a result (`class_names`,
      `true_label`, `title`, `tile_size`).

  Returns:
    The matplotlib `Axes` drawn into.

  Raises:
    ImportError: if matplotlib is not installed.
    ValueError: for anything else than the inputs above, or `options` with
      a picture.

  Examples:
    >>> out = sr_jax.sr_map(model, params, image, arch="vgg16")  # doctest: +SKIP
    >>> sr_jax.viz.show(out, class_names=sr_jax.imagenet_classes())  # doctest: +SKIP
  """
  plt = _pyplot()
  pixels = _picture(result_or_image, options)
  if ax is None:
    height, width = pixels.shape[:2]
    _, ax = plt.subplots(figsize=(width / _DPI, height / _DPI), dpi=_DPI)
    ax.set_position((0, 0, 1, 1))
  ax.imshow(pixels, cmap="gray" if pixels.ndim == 2 else None,
            vmin=0, vmax=255, interpolation="nearest")
  ax.set_axis_off()
  return ax
