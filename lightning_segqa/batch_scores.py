"""``BatchScores``: what ``LabelQuality.forward`` returns, the per-image scores of one batch."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

from lightning_segqa.functional._inputs import PreparedInputs


@dataclass
class BatchScores:
    """Per-image scores of one batch, as ``metric(preds, target, indexes=...)`` returns them.

    Only the scores that depend on one image are here (the computed methods whose unit in
    :data:`~lightning_segqa.scores.REGISTRY` is ``per_image``: ``softmin``, ``confidence_in_label``,
    ``correctly_classified_pixels``, ``iou``, ``connected_components``). Thresholded CCP and
    confident learning depend on the whole dataset: they appear in
    :meth:`~lightning_segqa.LabelQuality.compute`'s report only.

    Attributes:
        indexes: ``(B,)`` dataset index of each image, on the metric's device.
        scores: method name -> ``(B,)`` float32 scores (lower = more likely mislabeled),
            in the order of the batch.
        inputs: the checked batch the scores came from (probabilities, target, valid pixels),
            e.g. to draw the worst images without reading the batch again.

    Examples:
        >>> import torch
        >>> from lightning_segqa import LabelQuality
        >>> metric = LabelQuality(num_classes=2, methods=["softmin", "thresholded_ccp"])
        >>> probs = torch.tensor([[[[0.9]], [[0.1]]], [[[0.2]], [[0.8]]]])  # (2, 2, 1, 1)
        >>> batch = metric(probs, torch.tensor([[[0]], [[0]]]), indexes=torch.tensor([4, 7]))
        >>> sorted(batch.scores), batch.indexes.tolist()
        (['softmin'], [4, 7])
        >>> [round(v, 2) for v in batch.scores["softmin"].tolist()]
        [0.9, 0.2]
    """

    indexes: Tensor
    scores: dict[str, Tensor] = field(default_factory=dict)
    inputs: PreparedInputs | None = None

    def __len__(self) -> int:
        """Number of images in the batch."""
        return int(self.indexes.numel())
