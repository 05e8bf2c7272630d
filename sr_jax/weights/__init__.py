"""Weight files: convert PyTorch state dicts, save and load safetensors.

Three modules, one concept each:

* `format`: our safetensors files (one tensor per Flax variable, string
  metadata), reading, writing (atomically) and checking them against an
  architecture.
* `convert`: torchvision, timm and vgg_face_dag state dicts to our variables
  and files (`convert_state_dict`, `convert_file`).
* `hub`: downloading official weights into a cache (`fetch`) and the weights
  shipped with the project (`bundled_path`).

This package reads the architectures from their table, `sr_jax.archs` (which
`sr_jax.models.registry` fills), and imports nothing of `sr_jax.models`:
building a model with its variables is `sr_jax.models.loading.load_model`,
which imports this package, never the other way round.
"""

from sr_jax.weights.convert import (LAYOUTS, convert_file, convert_state_dict,
                                    detect_layout)
from sr_jax.weights.format import (FORMAT, PathLike, check_tensors,
                                   expected_shapes, flatten, load,
                                   read_metadata, save, sha256, sniff,
                                   unflatten)
from sr_jax.weights.hub import (BASE_URL_ENV, CACHE_ENV, OFFLINE_ENV,
                                TORCHVISION_BASE_URL, TORCHVISION_FILES,
                                WEIGHTS_DIR_ENV, bundled_path,
                                default_cache_dir, fetch)

__all__ = [
    "BASE_URL_ENV", "CACHE_ENV", "FORMAT", "LAYOUTS", "OFFLINE_ENV",
    "PathLike", "TORCHVISION_BASE_URL", "TORCHVISION_FILES", "WEIGHTS_DIR_ENV",
    "bundled_path", "check_tensors", "convert_file", "convert_state_dict",
    "default_cache_dir", "detect_layout", "expected_shapes", "fetch",
    "flatten", "load", "read_metadata", "save", "sha256", "sniff",
    "unflatten",
]
