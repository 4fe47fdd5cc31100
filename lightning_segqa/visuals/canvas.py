"""Turning a matplotlib figure into pixels on its own Agg canvas.

:func:`figure_to_array` draws a :class:`matplotlib.figure.Figure` with a private
``FigureCanvasAgg``, so no global backend is set and ``pyplot`` is never imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def figure_to_array(fig: Figure) -> np.ndarray:
    """Draw a matplotlib figure with Agg and return its pixels as ``(H, W, 3)`` uint8.

    Examples:
        >>> from matplotlib.figure import Figure
        >>> figure_to_array(Figure(figsize=(2, 1), dpi=50)).shape
        (50, 100, 3)

    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not isinstance(fig, Figure):
        raise TypeError(f"`fig` must be a matplotlib Figure, got {type(fig).__name__}")
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
