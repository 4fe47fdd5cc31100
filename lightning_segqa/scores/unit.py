"""What a scoring method is: one :class:`ScoreMethod`, and the shared pass over a batch it reads.

A method keeps a few 1-D list states (one row per image, or a ragged list of values counted by
another of its states), fills them from a :class:`BatchPass` (``update``) and turns the rows of the
images it keeps into one score per image (``compute``). :class:`~lightning_segqa.LabelQuality`
loops over the chosen methods; the functional scores (:func:`score_one_batch`) are the same
``compute`` of the same ``update`` on one batch, so the two agree by construction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import torch
from torch import Tensor

from lightning_segqa.functional._inputs import PreparedInputs, prepare_inputs
from lightning_segqa.functional.confident import checked_pixel_pass
from lightning_segqa.functional.local import checked_local_scores, local_scores
from lightning_segqa.functional.pixel import PixelPass, pixel_pass
from lightning_segqa.functional.pooling import working_pass
from lightning_segqa.functional.thresholded import DEFAULT_THRESHOLDS, threshold_grid

__all__ = [
    "BatchPass",
    "ScoreMethod",
    "Settings",
    "check_finite_scores",
    "image_score",
    "kept_rows",
    "read_batch",
    "score_one_batch",
]

#: what a method reads of a batch: ``"label"`` the label probabilities ``s`` only (softmin, CIL:
#: :func:`~lightning_segqa.functional.local.local_scores` computes them from its label kernel),
#: ``"pixels"`` the full-resolution :class:`PixelPass`, ``"working"`` the pass at the working
#: resolution (after :func:`~lightning_segqa.functional.pooling.downsample`), ``"inputs"`` the
#: checked inputs (a kernel of its own)
Reads = Literal["label", "pixels", "working", "inputs"]
#: the state every method's ``compute`` may read besides its own: valid pixels per image
NUM_VALID = "num_valid"


@dataclass(frozen=True)
class Settings:
    """The scoring settings a method's ``update`` and ``compute`` read (set on the metric).

    Attributes:
        temperature: softmin temperature.
        downsample: block size of the working resolution.
        connectivity: neighbourhood of connected components.
        grid: TCCP threshold grid ``(G,)``.
        uniform_grid: ``G`` when ``grid`` is ``j / G`` (a faster exact path), else None.
        compile: the compiled-kernel choice (see :mod:`~lightning_segqa.functional.fused`).
    """

    temperature: float = 0.1
    downsample: int = 4
    connectivity: int = 1
    grid: Tensor = field(default_factory=lambda: threshold_grid(DEFAULT_THRESHOLDS))
    uniform_grid: int | None = DEFAULT_THRESHOLDS
    compile: bool | None = None


@dataclass(frozen=True)
class ScoreMethod:
    """One scoring method: its names, what it reads and keeps, how it updates and computes.

    Attributes:
        name: the full name (a key of :attr:`~lightning_segqa.LabelQualityReport.scores`).
        short: the table column (e.g. ``"SM"``).
        long: how a legend explains it.
        per_image: True when an image's score is known after its batch (``forward`` returns it,
            the callback can rank by it); False for dataset-level scores (known at ``compute``).
        reads: which pass over the batch ``update`` reads (see :data:`Reads`).
        states: names of the 1-D list states it keeps (the metric adds them).
        update: ``(batch, settings) -> {state: 1-D tensor}``, the batch's rows of every state.
        compute: ``(rows, settings) -> (scores, details)``: ``rows`` holds the kept images' rows
            of its states (``(n, width)``, or 1-D for ragged ones) and ``num_valid`` ``(n,)``;
            ``scores`` is ``(n,)`` in the order of the rows, ``details`` goes into the report.
        ragged: state -> the state whose per-image row sums count its values (lists of pixels).
        s_only: True for a per-image score that reads nothing but ``s`` (the logits then need no
            scan of their own: a NaN score reveals bad values).
    """

    name: str
    short: str
    long: str
    per_image: bool
    reads: Reads
    states: tuple[str, ...]
    update: Callable[[BatchPass, Settings], dict[str, Tensor]]
    compute: Callable[[Mapping[str, Tensor], Settings], tuple[Tensor, dict[str, Any]]]
    ragged: Mapping[str, str] = field(default_factory=dict)
    s_only: bool = False


def image_score(
    name: str,
    short: str,
    long: str,
    reads: Reads,
    score: Callable[[BatchPass, Settings], Tensor],
    s_only: bool = False,
) -> ScoreMethod:
    """A per-image method: its one state ``score_{name}`` holds the image's score.

    Examples:
        >>> unit = image_score("mean_s", "MS", "mean label probability", "pixels", lambda b, _: b.full.s.mean(-1))
        >>> unit.states, unit.per_image
        (('score_mean_s',), True)
    """
    state = f"score_{name}"
    return ScoreMethod(
        name=name,
        short=short,
        long=long,
        per_image=True,
        reads=reads,
        states=(state,),
        update=lambda batch, settings: {state: score(batch, settings)},
        compute=lambda rows, settings: (rows[state].reshape(-1), {}),
        s_only=s_only,
    )


class BatchPass:
    """One batch's checked inputs and its pixel passes, each made once, for every method to read.

    Attributes:
        prepared: the checked inputs at full resolution.
        settings: the scoring settings.
    """

    def __init__(
        self,
        prepared: PreparedInputs,
        settings: Settings,
        full: PixelPass | None = None,
        label_scores: dict[str, Tensor] | None = None,
    ) -> None:
        self.prepared = prepared
        self.settings = settings
        if full is not None:
            self.__dict__["full"] = full
        self._label_scores = label_scores or {}

    @cached_property
    def full(self) -> PixelPass:
        """The pixel pass at full resolution (made on first use, or given by the checked read)."""
        return pixel_pass(self.prepared, self.settings.compile)

    @cached_property
    def working(self) -> PixelPass:
        """The pixel pass at the working resolution (the full one at ``downsample=1``)."""
        if self.settings.downsample == 1:
            return self.full
        return working_pass(self.prepared, self.settings.downsample, self.settings.compile)

    @cached_property
    def num_valid(self) -> Tensor:
        """``(B,)`` float32 valid pixels per image."""
        prepared, b = self.prepared, self.prepared.target.shape[0]
        if prepared.all_valid:
            return torch.full((b,), float(prepared.valid[0].numel()), device=prepared.target.device)
        return prepared.valid.reshape(b, -1).sum(-1).float()

    def local(self, name: str) -> Tensor:
        """A pixel-local score of :func:`~lightning_segqa.functional.local.local_scores` for this batch."""
        if name in self._label_scores:
            return self._label_scores[name]
        return local_scores(self.full, self.settings.temperature, (name,), self.settings.compile)[name]


def read_batch(
    preds: Tensor,
    target: Tensor,
    methods: Sequence[ScoreMethod],
    settings: Settings,
    pixels: bool = False,
    **checks: object,
) -> BatchPass:
    """Check a batch and make the one full-resolution pass the methods read, the checks riding on it.

    Args:
        preds: ``(B, K, *spatial)`` probabilities or logits.
        target: ``(B, *spatial)`` given masks.
        methods: the methods that will read the batch.
        settings: the scoring settings.
        pixels: make the full-resolution :class:`PixelPass` even when no method reads it.
        checks: ``num_classes``, ``ignore_index``, ``input_format``, ``validate_args``,
            ``scan_logits`` of :func:`~lightning_segqa.functional._inputs.prepare_inputs`.

    Returns:
        The batch's :class:`BatchPass`.

    Examples:
        >>> from lightning_segqa.scores import REGISTRY
        >>> probs = torch.tensor([[[[0.9, 0.2]], [[0.1, 0.8]]]])
        >>> batch = read_batch(probs, torch.tensor([[[0, 0]]]), [REGISTRY["iou"]], Settings())
        >>> batch.full.wrong
        tensor([[False,  True]])
    """
    reads = {m.reads for m in methods}
    compile = settings.compile
    if isinstance(preds, Tensor) and preds.numel() == 0:  # nothing to read: checks only
        return BatchPass(prepare_inputs(preds, target, compile=compile, **checks), settings)  # type: ignore[arg-type]
    if pixels or "pixels" in reads or ("working" in reads and settings.downsample == 1):
        # the softmin's sums ride on the compiled pass (an `exp` per pixel, the values already read)
        kwargs = {"compile": compile, "temperature": settings.temperature}
        prepared, pp = checked_pixel_pass(preds, target, 1, **kwargs, **checks)  # type: ignore[arg-type]
        return BatchPass(prepared, settings, full=pp)
    if "label" in reads:
        names = [m.name for m in methods if m.reads == "label"]
        kwargs = {"temperature": settings.temperature, "methods": names, "compile": compile}
        prepared, scores = checked_local_scores(preds, target, **kwargs, **checks)  # type: ignore[arg-type]
        return BatchPass(prepared, settings, label_scores=scores)
    return BatchPass(prepare_inputs(preds, target, compile=compile, **checks), settings)  # type: ignore[arg-type]


def kept_rows(method: ScoreMethod, states: Mapping[str, Tensor], keep: Tensor | None = None) -> dict[str, Tensor]:
    """The rows of the kept images of a method's states (and ``num_valid``), in state order.

    Args:
        method: the method.
        states: every state concatenated (1-D), ``num_valid`` included.
        keep: ``(n,)`` bool, True for the images kept; None keeps every image.

    Examples:
        >>> from lightning_segqa.scores import REGISTRY
        >>> rows = kept_rows(REGISTRY["softmin"], {"score_softmin": torch.tensor([0.5, 0.2]),
        ...                  "num_valid": torch.tensor([4.0, 4.0])}, torch.tensor([False, True]))
        >>> rows["score_softmin"], rows["num_valid"]
        (tensor([[0.2000]]), tensor([4.]))
    """
    num_valid = states[NUM_VALID]
    n = num_valid.numel()
    out = {NUM_VALID: num_valid if keep is None else num_valid[keep]}
    for name in method.states:
        value = states[name]
        if keep is None:  # every image: rows as they are
            out[name] = value if name in method.ragged else _rows(value, n)
        elif name in method.ragged:  # a list of values per image: keep those of kept images
            counts = states[method.ragged[name]].reshape(n, -1).sum(-1).long()
            owner = torch.repeat_interleave(torch.arange(n, device=value.device), counts)
            out[name] = value[keep.to(value.device)[owner]]
        else:
            out[name] = _rows(value, n)[keep.to(value.device)]
    return out


def _rows(value: Tensor, n: int) -> Tensor:
    """A 1-D state of ``n`` images as ``(n, width)`` rows."""
    return value.reshape(n, value.numel() // max(n, 1))


def score_one_batch(method: ScoreMethod, preds: Tensor, target: Tensor, settings: Settings, **checks: object) -> Tensor:
    """A method's score of one batch taken as the whole dataset: its ``compute`` of its ``update``.

    Args:
        method: the method.
        preds: ``(B, K, *spatial)`` probabilities or logits.
        target: ``(B, *spatial)`` integer class ids.
        settings: the scoring settings.
        checks: ``ignore_index``, ``input_format``, ``validate_args`` of
            :func:`~lightning_segqa.functional._inputs.prepare_inputs`.

    Returns:
        ``(B,)`` scores in the order of the batch.

    Examples:
        >>> from lightning_segqa.scores import REGISTRY
        >>> probs = torch.tensor([[[[0.9, 0.2]], [[0.1, 0.8]]]])
        >>> score_one_batch(REGISTRY["correctly_classified_pixels"], probs, torch.tensor([[[0, 0]]]), Settings())
        tensor([0.5000])
    """
    batch = read_batch(preds, target, [method], settings, **checks)
    states = method.update(batch, settings)
    states[NUM_VALID] = batch.num_valid
    return method.compute(kept_rows(method, states), settings)[0]


def check_finite_scores(scores: Tensor, num_valid: Tensor) -> None:
    """Raise if an image with valid pixels scored NaN: its logits held NaN or +inf.

    Args:
        scores: ``(B,)`` one score of s alone (softmin or CIL) per image.
        num_valid: ``(B,)`` valid pixels per image.

    Raises:
        ValueError: naming the batch positions of the images with NaN or infinite values.

    Examples:
        >>> check_finite_scores(torch.tensor([0.5, float("nan")]), torch.tensor([4.0, 4.0]))
        Traceback (most recent call last):
        ...
        ValueError: `preds` contains NaN or infinite values (images at batch positions [1]).
    """
    bad = torch.isnan(scores) & (num_valid > 0)
    if bool(bad.any()):
        raise ValueError(
            f"`preds` contains NaN or infinite values (images at batch positions {bad.nonzero().flatten().tolist()})."
        )
