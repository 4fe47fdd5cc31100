"""Adapter for ``TensorBoardLogger``: images via ``add_image``, captions and tables via ``add_text``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor

from lightning_segqa import visuals as _v
from lightning_segqa.loggers.base import LoggerAdapter, Names, Rows
from lightning_segqa.visuals import SuspectImage, figure_to_array, render_suspect


def _markdown(columns: Sequence[str], rows: Rows) -> str:
    def cell(v: Any) -> str:
        text = f"{v:.6g}" if isinstance(v, float) else str(v)
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(map(cell, columns)) + " |", "|" + "---|" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(map(cell, row)) + " |" for row in rows])


class TensorBoardAdapter(LoggerAdapter):
    """``TensorBoardLogger``: images via ``add_image``, captions and tables via ``add_text``.

    Suspect ``r`` is the image ``{key}/rank{r:02d}``: the tag stays the same from epoch to epoch,
    so TensorBoard's step slider walks through each epoch's rank-``r`` suspect (its index and name
    are in the picture's title). Captions (``rank01: idx 17 (name) | softmin score ...``) go to
    the text ``{key}/captions``, tables to the text ``{key}`` as Markdown. Figures are drawn with Agg and
    sent through ``add_image`` (what ``add_figure`` does, minus its ``pyplot`` import).

    Examples:
        >>> from lightning.pytorch.loggers import TensorBoardLogger
        >>> from lightning_segqa.loggers import adapter_class_for
        >>> adapter_class_for(TensorBoardLogger) is TensorBoardAdapter
        True

    """

    def _log_suspects(
        self,
        key: str,
        suspects: list[SuspectImage],
        step: int,
        class_names: Names,
        palette: Tensor | None,
        ignore_index: int | None,
    ) -> None:
        """Add one rendered image per suspect and one Markdown list of captions."""
        writer, lines = self.logger.experiment, []
        for r, s in enumerate(suspects, start=1):
            arr = render_suspect(s, class_names, palette, ignore_index)
            writer.add_image(f"{key}/rank{r:02d}", arr, step, dataformats="HWC")
            lines.append(f"- **rank{r:02d}**: {_v.suspect_caption(s)}")
        if lines:
            writer.add_text(f"{key}/captions", "\n".join(lines), step)
        writer.flush()

    def _log_table(self, key: str, columns: list[str], data: list[list[Any]], step: int) -> None:
        """Add the table as Markdown text."""
        self.logger.experiment.add_text(key, _markdown(columns, data), step)
        self.logger.experiment.flush()

    def _log_figure(self, key: str, figure: Any, step: int) -> None:
        """Add the figure as an image."""
        self.logger.experiment.add_image(key, figure_to_array(figure), step, dataformats="HWC")
        self.logger.experiment.flush()
