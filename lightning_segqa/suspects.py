"""A bounded collection of the ``k`` worst images seen so far, for drawing suspects.

Only ``k`` images (and their masks and per-pixel maps) are ever held, never the dataset.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

from lightning_segqa.functional._inputs import PreparedInputs
from lightning_segqa.functional.class_confidence import confident_mispredictions
from lightning_segqa.functional.pooling import downsample as _downsample
from lightning_segqa.visuals import SuspectImage
from lightning_segqa.visuals.suspect import MARK_CL_ISSUES, MARK_CONFIDENT


class SuspectHeap:
    """Keep the ``k`` lowest-scored images with what is needed to draw them.

    Args:
        k: number of images to keep (0 keeps nothing).
        downsample: working resolution of confident learning, to draw its issue mask later.

    Examples:
        >>> import torch
        >>> from lightning_segqa.functional._inputs import prepare_inputs
        >>> heap = SuspectHeap(k=1)
        >>> p = prepare_inputs(torch.rand(2, 3, 4, 4).softmax(1), torch.zeros(2, 4, 4, dtype=torch.long))
        >>> heap.push(torch.tensor([0.7, 0.2]), torch.tensor([10, 11]), p)
        >>> [e.index for e in heap.entries()]
        [11]
    """

    def __init__(self, k: int, downsample: int = 1) -> None:
        if not isinstance(k, int) or k < 0:
            raise ValueError(f"`k` must be a non-negative int, got {k!r}.")
        self.k = k
        self.downsample = downsample
        self._items: list[dict] = []

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        """Forget every image."""
        self._items = []

    def push(
        self,
        scores: Tensor,
        indexes: Tensor,
        prepared: PreparedInputs,
        images: Tensor | None = None,
        is_mislabeled: Tensor | None = None,
        names: Sequence[str] | None = None,
    ) -> None:
        """Offer a batch; keeps the ``k`` lowest scores among the kept ones and this batch.

        ``names`` (one per image, e.g. file stems) are kept with the images and shown with them.
        """
        if self.k == 0 or scores.numel() == 0:
            return
        worst_kept = self._items[-1]["score"] if len(self._items) >= self.k else float("inf")
        take = min(self.k, scores.numel())
        cand = torch.topk(torch.nan_to_num(scores.float(), nan=float("inf")), take, largest=False)
        values = cand.values.tolist()  # one small host transfer per batch
        room = len(self._items) < self.k  # while not full, keep everything offered (NaN scores too)
        chosen = [int(p) for p, v in zip(cand.indices.tolist(), values, strict=True) if room or v < worst_kept]
        if not chosen:
            return
        sel = torch.tensor(chosen, device=scores.device)
        probs, target, valid = prepared.probs[sel], prepared.target[sel], prepared.valid[sel]
        sub = PreparedInputs(probs=probs, target=target, valid=valid)
        small = _downsample(sub, self.downsample)
        s_full = probs.gather(1, target.unsqueeze(1)).squeeze(1)
        p_pred, pred = probs.max(1)  # to mark confident mispredictions once the thresholds are known
        s_small = small.probs.gather(1, small.target.unsqueeze(1)).squeeze(1)
        mis_small = small.valid & (s_small < small.probs.amax(1))  # as the scores count it: ties are correct
        for j, pos in enumerate(chosen):
            self._items.append(
                {
                    "score": float(scores[pos]),
                    "index": int(indexes[pos]),
                    "target": torch.where(valid[j], target[j], -1).cpu(),
                    "pred": pred[j].cpu(),
                    "p_pred": p_pred[j].float().cpu(),
                    "pixel_scores": torch.where(valid[j], s_full[j], float("nan")).float().cpu(),
                    "s_small": s_small[j].float().cpu(),
                    "mis_small": mis_small[j].cpu(),
                    "image": None if images is None else images[pos].detach().float().cpu(),
                    "is_mislabeled": None if is_mislabeled is None else bool(is_mislabeled[pos]),
                    "name": None if names is None else (str(names[pos]) or None),
                }
            )
        self._merge([])

    def _merge(self, more: Iterable[dict]) -> None:
        seen: dict[int, dict] = {}
        for item in sorted([*self._items, *more], key=lambda e: (e["score"], e["index"])):
            seen.setdefault(item["index"], item)
        self._items = list(seen.values())[: self.k]

    def state(self) -> list[dict]:
        """Picklable content (for gathering across ranks and saving)."""
        return list(self._items)

    def load(self, items: list[dict]) -> None:
        """Absorb items produced by :meth:`state`."""
        self._merge(items)

    def gather(self, world_size: int) -> None:
        """Absorb every process's kept images (a collective call under ``torch.distributed``; else nothing)."""
        if world_size > 1 and self.k and torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list = [None] * world_size
            torch.distributed.all_gather_object(gathered, self.state())
            for items in gathered:
                self.load(items)

    def entries(
        self,
        method: str = "softmin",
        cl_cutoff: float | None = None,
        ignore_index: int | None = None,
        scores: dict[int, float] | None = None,
        class_thresholds: Sequence[float] | None = None,
    ) -> list[SuspectImage]:
        """The kept images as :class:`~lightning_segqa.visuals.SuspectImage`, worst first.

        Args:
            method: name shown with the score.
            cl_cutoff: dataset-level confident-learning cutoff; without ``class_thresholds``, its
                issue pixels (at the working resolution) are marked.
            ignore_index: value restored in the given mask where pixels were ignored.
            scores: final scores by index (e.g. from the report) to show instead of the heap's.
            class_thresholds: per-class self-confidence (``report.details["class_confidence"]``);
                when given, the confidently mispredicted pixels are marked at full resolution
                (see :func:`~lightning_segqa.functional.class_confidence.confident_mispredictions`).
        """
        out = []
        for e in self._items:
            target = e["target"]
            if ignore_index is not None:
                target = torch.where(target < 0, ignore_index, target)
            issue, rule = None, None
            if class_thresholds is not None and "p_pred" in e:  # full resolution: crisp marks
                issue = confident_mispredictions(e["pixel_scores"], e["pred"], e["p_pred"], class_thresholds)
                rule = MARK_CONFIDENT
            elif cl_cutoff is not None:  # confident learning's issues at its working resolution
                small = e["mis_small"] & (e["s_small"] <= cl_cutoff)
                f = self.downsample
                issue = small.repeat_interleave(f, 0).repeat_interleave(f, 1)[: target.shape[0], : target.shape[1]]
                rule = MARK_CL_ISSUES
            out.append(
                SuspectImage(
                    index=e["index"],
                    score=(scores or {}).get(e["index"], e["score"]),
                    method=method,
                    target=target.clamp_min(0) if ignore_index is None else target,
                    pred=e["pred"],
                    pixel_scores=torch.nan_to_num(e["pixel_scores"], nan=1.0),
                    image=e["image"],
                    issue_mask=issue,
                    is_mislabeled=e["is_mislabeled"],
                    name=e.get("name"),
                    mark_rule=rule,
                )
            )
        return out
