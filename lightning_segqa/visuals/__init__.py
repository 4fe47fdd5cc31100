"""Pictures of suspect masks and detection curves, drawn without a global matplotlib backend.

Figures are :class:`matplotlib.figure.Figure` objects drawn on their own ``FigureCanvasAgg``: this
module never calls ``matplotlib.use`` or imports ``pyplot``, and imports matplotlib lazily.

The code lives in :mod:`~lightning_segqa.visuals.pixel_maps` (palettes, coloured masks, score heat
maps, marked pixels), :mod:`~lightning_segqa.visuals.suspect` (:class:`SuspectImage` and its
picture), :mod:`~lightning_segqa.visuals.curves` (ROC and precision-recall curves) and
:mod:`~lightning_segqa.visuals.canvas` (:func:`figure_to_array`); everything is importable from
``lightning_segqa.visuals``.
"""

from lightning_segqa.visuals.canvas import figure_to_array
from lightning_segqa.visuals.curves import plot_detection_curves
from lightning_segqa.visuals.pixel_maps import (
    HEAT_CMAP,
    colorize_mask,
    default_palette,
    heat_colours,
    mark_colour,
    mark_pixels,
    score_heat_map,
)
from lightning_segqa.visuals.pixel_maps import (
    _image_hwc as _image_hwc,  # the W&B adapter uses it
)
from lightning_segqa.visuals.suspect import (
    MARK_CL_ISSUES,
    MARK_CONFIDENT,
    SuspectImage,
    render_suspect,
    render_suspect_figure,
    suspect_caption,
)

__all__ = [
    "HEAT_CMAP",
    "MARK_CL_ISSUES",
    "MARK_CONFIDENT",
    "SuspectImage",
    "colorize_mask",
    "default_palette",
    "figure_to_array",
    "heat_colours",
    "mark_colour",
    "mark_pixels",
    "plot_detection_curves",
    "render_suspect",
    "render_suspect_figure",
    "score_heat_map",
    "suspect_caption",
]
