"""The benchmark's result and its Tables 1-4 (AUROC, AUPRC, Lift@T, Lift@100), as text or Markdown.

:class:`BenchmarkResult` holds the detection metrics of every (error kind, model) run;
:func:`format_tables` lays them out as the paper's tables, rows :data:`PAPER_ROWS`, one table per
entry of :data:`TABLES`. Used by :mod:`lightning_segqa.experiments.benchmark`, which re-exports these names.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from lightning_segqa.scores.registry import REGISTRY

#: table rows in the paper's order: (method of :data:`~lightning_segqa.report.METHODS`, paper name)
PAPER_ROWS: tuple[tuple[str, str], ...] = (
    ("correctly_classified_pixels", "Correctly Classified Pixels"),
    ("thresholded_ccp", "Thresholded CCP"),
    ("confidence_in_label", "Confidence In Label"),
    ("confident_learning_counts", "Confident Learning Counts"),
    ("iou", "IoU"),
    ("connected_components", "Connected Components"),
    ("softmin", "Softmin"),
)


def table_rows() -> tuple[tuple[str, str], ...]:
    """The tables' rows: the paper's seven (:data:`PAPER_ROWS`), then any other registered method.

    A method added to :data:`~lightning_segqa.scores.REGISTRY` gets a row under its long name.

    Examples:
        >>> [name for _, name in table_rows()][-1]
        'Softmin'
    """
    paper = {method for method, _ in PAPER_ROWS}
    extra = [(name, unit.long[:1].upper() + unit.long[1:]) for name, unit in REGISTRY.items() if name not in paper]
    return PAPER_ROWS + tuple(extra)


#: (detection metric, table title), as Tables 1-4 of the paper
TABLES: tuple[tuple[str, str], ...] = (
    ("auroc", "Table 1. AUROC"),
    ("auprc", "Table 2. AUPRC"),
    ("lift_at_t", "Table 3. Lift@T (T = number of mislabeled images)"),
    ("lift_at_100", "Table 4. Lift@100"),
)
_MODEL_NAMES = {"deeplabv3plus": "DeepLabV3+", "fpn": "FPN", "unet": "U-Net", "tiny": "Tiny"}
Metrics = dict[str, dict[str, dict[str, dict[str, float]]]]  # error -> model -> method -> metric


@dataclass
class BenchmarkResult:
    """Detection metrics of every run, and the seconds each took to train and predict (as cached)."""

    metrics: Metrics
    train_seconds: dict[str, dict[str, float]] = field(default_factory=dict)

    def tables(self, markdown: bool = False) -> str:
        """Render the four tables, see :func:`format_tables`."""
        return format_tables(self.metrics, markdown=markdown)


def _cell(value: float, markdown: bool, best: bool) -> str:
    text = "–" if math.isnan(value) else f"{value:.3f}"
    return f"**{text}**" if markdown and best else text


def format_tables(
    metrics: Mapping[str, Mapping[str, Mapping[str, Mapping[str, float]]]], errors: Sequence[str] | None = None,
    models: Sequence[str] | None = None, markdown: bool = False,
) -> str:  # fmt: skip
    """Tables 1-4 of the paper: rows = the methods (:func:`table_rows`), columns = error kind x model.

    Args:
        metrics: ``metrics[error][model][method][metric]``, e.g. from
            :func:`~lightning_segqa.experiments.benchmark.score_predictions`.
        errors: column order of error kinds (default: the keys of ``metrics``).
        models: column order of models within each kind (default: order of appearance).
        markdown: Markdown tables (best value of each column in bold) instead of plain text.

    Examples:
        >>> from lightning_segqa.report import DETECTION_METRICS
        >>> det = {m: dict.fromkeys(DETECTION_METRICS, 0.5) for m, _ in PAPER_ROWS}
        >>> det["softmin"] = dict.fromkeys(DETECTION_METRICS, 0.9)
        >>> text = format_tables({"drop": {"fpn": det}})
        >>> print(text.splitlines()[0]); print(text.splitlines()[-1])
        Table 1. AUROC
        Softmin                      0.900
        >>> format_tables({"drop": {"fpn": det}}, markdown=True).splitlines()[2]
        '| Method | Drop FPN |'
    """
    errors = list(metrics) if errors is None else list(errors)
    if models is None:
        models = list(dict.fromkeys(m for e in errors for m in metrics.get(e, {})))
    columns = [(e, m) for e in errors for m in models if m in metrics.get(e, {})]
    nan = float("nan")
    blocks, table = [], table_rows()
    for key, title in TABLES:
        values = {(e, m): [metrics[e][m].get(meth, {}).get(key, nan) for meth, _ in table] for e, m in columns}
        best = {c: max((v for v in vals if not math.isnan(v)), default=nan) for c, vals in values.items()}
        rows = [
            [name, *(_cell(values[c][r], markdown, values[c][r] == best[c]) for c in columns)]
            for r, (_, name) in enumerate(table)
        ]
        if markdown:
            head = ["Method", *(f"{e.capitalize()} {_MODEL_NAMES.get(m, m)}" for e, m in columns)]
            lines = [f"### {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" + "---:|" * len(columns)]
            lines += ["| " + " | ".join(r) + " |" for r in rows]
        else:
            grid = [
                ["Error", *(e.capitalize() for e, _ in columns)],
                ["Model", *(_MODEL_NAMES.get(m, m) for _, m in columns)],
            ]
            grid += rows
            widths = [max(len(r[i]) for r in grid) for i in range(len(grid[0]))]
            lines = [title] + [
                "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
                for r in grid
            ]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
