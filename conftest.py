"""Collection for `python -m pytest --doctest-modules sr_jax`: the absl
scripts define their flags on import (importing two of them in one process
would define a flag twice) and hold no examples, and the deprecated alias
modules warn on import by design."""

collect_ignore = ["sr_jax/scripts", "sr_jax/batch.py", "sr_jax/io.py",
                  "sr_jax/models/allocator.py"]
