"""Adapter for ``WandbLogger``: images with mask overlays, tables and figures (``wandb`` is never imported here)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from lightning_segqa import visuals as _v
from lightning_segqa.loggers.base import LoggerAdapter, Names, _warn_once
from lightning_segqa.visuals import SuspectImage, figure_to_array, render_suspect


def _wandb_masks(s: SuspectImage, names: Names, ignore_index: int | None) -> dict | None:
    # W&B overlays need ids in 0..255: ignore pixels become 255; None if a class id is > 254
    names, out, labels = list(names or ()), {}, {}
    for kind, mask in (("ground_truth", s.target), ("predictions", s.pred)):
        m = mask.detach().cpu().long().numpy()
        ignore = (m == ignore_index) if ignore_index is not None else np.zeros(m.shape, bool)
        ids = np.unique(m[~ignore])
        if ids.size and (ids.min() < 0 or ids.max() > 254):
            return None
        labels.update({int(c): names[c] if c < len(names) else f"class {c}" for c in ids})
        labels.update({255: "ignore"} if ignore.any() else {})
        out[kind] = {"mask_data": np.where(ignore, 255, m).astype(np.uint8), "class_labels": labels}
    if s.issue_mask is not None:  # the pixels the evidence says are mislabeled, as a third overlay
        marked = s.issue_mask.detach().cpu().numpy().astype(np.uint8)
        out["marked"] = {"mask_data": marked, "class_labels": {1: f"marked: {s.mark_rule or 'suspect pixels'}"}}
    return out


class WandbAdapter(LoggerAdapter):
    """``WandbLogger``: ``log_image`` with mask overlays, ``log_table``, figures as images.

    ``{key}/masks`` gets each suspect's image (or its pixel-score heat map when there is none)
    with the given and predicted masks (and the marked pixels, when there are marks) as W&B
    overlays; ``{key}/panels`` gets the rendered panels
    (padded with white to one size).
    Captions are ``rank{r:02d} <caption>``.

    Examples:
        >>> from lightning.pytorch.loggers import WandbLogger
        >>> from lightning_segqa.loggers import adapter_class_for
        >>> adapter_class_for(WandbLogger) is WandbAdapter
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
        """Log the mask overlays and the rendered panels (two image lists)."""
        bases = [_v._image_hwc(s.image) if s.image is not None else _v.score_heat_map(s.pixel_scores) for s in suspects]
        masks = [_wandb_masks(s, class_names, ignore_index) for s in suspects]
        if any(m is None for m in masks):
            _warn_once(
                self.logger,
                "masks",
                "class ids outside 0..254 cannot be W&B mask overlays; those suspects are logged without them",
            )
        captions = [f"rank{r:02d} {_v.suspect_caption(s)}" for r, s in enumerate(suspects, start=1)]
        panels = [render_suspect(s, class_names, palette, ignore_index) for s in suspects]
        h, w = max(p.shape[0] for p in panels), max(p.shape[1] for p in panels)  # W&B wants 1 size
        panels = [np.pad(p, ((0, h - p.shape[0]), (0, w - p.shape[1]), (0, 0)), constant_values=255) for p in panels]
        self.logger.log_image(key=f"{key}/masks", images=bases, step=step, caption=captions, masks=masks)
        self.logger.log_image(key=f"{key}/panels", images=panels, step=step, caption=captions)

    def _log_table(self, key: str, columns: list[str], data: list[list[Any]], step: int) -> None:
        """Log a ``wandb.Table``."""
        self.logger.log_table(key=key, columns=columns, data=data, step=step)

    def _log_figure(self, key: str, figure: Any, step: int) -> None:
        """Log the figure as a ``wandb.Image``."""
        self.logger.log_image(key=key, images=[figure_to_array(figure)], step=step)

    def _output_dir(self) -> Path:
        return Path(self.logger.experiment.dir) / "segqa"

    def run_dir(self) -> Path:
        """``segqa/`` in the run's files folder (``run.dir``), which W&B uploads with the run."""
        return self._output_dir()

    def upload_files(self, paths: Sequence[Path]) -> None:
        """Register the files with the run (``run.save``; re-uploaded when they change)."""
        run = self.logger.experiment
        root = Path(run.dir)
        for path in paths:
            path = Path(path).resolve()
            base = root if path.is_relative_to(root.resolve()) else path.parent
            run.save(str(path), base_path=str(base), policy="live")
