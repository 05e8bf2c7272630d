"""Pictures of explanations: colormaps, edge overlays, titled panels, `show`.

Drawing happens here, at the edge (PIL); matplotlib is used only by `show`
and imported when it is called. Colormaps return uint8 HxWx3 arrays; panels
return `PIL.Image.Image`. Modules:

* `colormaps`: `relevance_rgb`, `heat`, `overlay_edges`;
* `panels`: `panel` (the SR paper's Figure 3), `compare_models_panel`,
  `grid` (captioned tiles), `caption_lines`, `panel_png`;
* `figures`: `show`, for matplotlib users.

`canny` lives in `sr_jax.image_ops` and is re-exported here. Class names are
passed as `class_names=` everywhere.
"""

from sr_jax.image_ops import canny
from sr_jax.viz.colormaps import heat, overlay_edges, relevance_rgb
# `_grid` is the old private name of `grid`, still used by a few callers.
from sr_jax.viz.panels import (_grid, Label, TILE_NAMES, caption_lines,  # noqa: F401
                               compare_models_panel, grid, panel, panel_png)
from sr_jax.viz.figures import show

__all__ = [
    "Label", "TILE_NAMES", "canny", "caption_lines", "compare_models_panel",
    "grid", "heat", "overlay_edges", "panel", "panel_png", "relevance_rgb", "show",
]
