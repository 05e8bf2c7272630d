"""Deprecated: the malloc settings now live in `sr_jax.runtime`, with the XLA
flags, and `sr_jax` applies both on import (`sr_jax.runtime.tune_from_env`).

This module keeps its old names for one release: `keep_freed_memory`,
`tune_from_env` (now `sr_jax.runtime.tune_malloc_from_env`), `is_tuned`
(now `sr_jax.runtime.malloc_is_tuned`) and `ENV`.
"""

import warnings

from sr_jax.runtime import (M_ARENA_MAX, M_MMAP_MAX,  # noqa: F401
                            M_TRIM_THRESHOLD, keep_freed_memory)
from sr_jax.runtime import MALLOC_ENV as ENV  # noqa: F401
from sr_jax.runtime import malloc_is_tuned as is_tuned  # noqa: F401
from sr_jax.runtime import tune_malloc_from_env as tune_from_env  # noqa: F401

warnings.warn("sr_jax.models.allocator is deprecated; use sr_jax.runtime "
              "(tune_malloc_from_env, malloc_is_tuned).", DeprecationWarning,
              stacklevel=2)
