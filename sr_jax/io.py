"""Deprecated: this module is now `sr_jax.files` (`io` shadowed the standard
library's module of that name).

It re-exports the names `sr_jax.files` defines, for one release; import them
from `sr_jax.files` instead.
"""

import warnings

from sr_jax import files as _files
from sr_jax.files import (DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES,  # noqa: F401
                          TEMP_SUFFIX, ImageLoadError, PathLike, atomic_write,
                          list_images, load_image, remove_temp_files, save_npz,
                          save_png)

warnings.warn("sr_jax.io is deprecated; import sr_jax.files instead.",
              DeprecationWarning, stacklevel=2)


def __getattr__(name: str):
  try:
    return getattr(_files, name)
  except AttributeError:
    raise AttributeError(
        f"module 'sr_jax.io' has no attribute {name!r}") from None
