"""Image operations on pixels that the explanations use (scikit-image).

`canny` gives the edge map that `sr_jax.sr` stores with each result and that
the panels overlay maps on, as in the SR paper's figures. It lives here, not
in `sr_jax.viz`, so that computing a result needs no drawing code.
"""

from __future__ import annotations

import jax
import numpy as np
from skimage import color, feature, util


def canny(image: jax.typing.ArrayLike, sigma: float = 2.0) -> np.ndarray:
  """Canny edges of an image (`skimage.feature.canny` on its grayscale).

  Args:
    image: uint8 or float ([0, 1]) image, HxW, HxWx3 or HxWx4 (alpha ignored).
    sigma: the Gaussian smoothing before the gradient; larger = fewer edges.

  Returns:
    bool array (H, W), True on edges.

  Raises:
    ValueError: if `image` has another shape, or `sigma` is not positive.

  Examples:
    >>> square = np.zeros((20, 20), np.uint8)
    >>> square[5:15, 5:15] = 255
    >>> edges = canny(square)
    >>> edges.dtype, bool(edges[5:15, 5:15].any()), bool(edges[0].any())
    (dtype('bool'), True, False)
  """
  x = np.asarray(image)
  if x.ndim == 3 and x.shape[-1] in (3, 4):
    gray = color.rgb2gray(x[..., :3])
  elif x.ndim == 2:
    gray = util.img_as_float(x)
  else:
    raise ValueError(f"`image` (shape={x.shape}) must be HxW, HxWx3 or HxWx4.")
  if not sigma > 0:
    raise ValueError(f"`sigma` (={sigma!r}) must be > 0.")
  return feature.canny(gray, sigma=sigma)
