"""Scores computed from one image's own pixels: softmin, CIL, CCP and IoU (paper eqs. 1, 5, 6, 8).

Each public function takes ``preds`` ``(B, K, *spatial)`` (probabilities or logits) and
``target`` ``(B, *spatial)`` and returns a ``(B,)`` tensor where **lower means more likely
mislabeled**. Pixels equal to ``ignore_index`` are left out; an image without any valid pixel
scores NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property

import torch
from torch import Tensor

from lightning_segqa.functional import fused
from lightning_segqa.functional._inputs import PreparedInputs, prepare_inputs

LOCAL_METHODS = ("softmin", "confidence_in_label", "correctly_classified_pixels", "iou")
S_METHODS = frozenset(("softmin", "confidence_in_label"))  # need only ``s``


def _flat(x: Tensor, keep: int) -> Tensor:
    return x.reshape(*x.shape[:keep], -1)


# Temporaries of whole batches are built this many pixels at a time. Larger blocks are
# allocated with mmap (glibc: over 32 MB) and pay a page fault per 4 KB on every call.
CHUNK_PIXELS = 1 << 21
# From this many pixels on, ``s`` is gathered from flat rows (see ``_take_label``).
FLAT_GATHER_MIN_PIXELS = 1 << 20


def _image_chunks(b: int, npix: int) -> list[tuple[int, int]]:
    """``[start, stop)`` ranges of images holding at most ``CHUNK_PIXELS`` pixels (one image at least)."""
    step = max(1, CHUNK_PIXELS // max(npix, 1))
    return [(i, min(b, i + step)) for i in range(0, b, step)] or [(0, 0)]


def _take_label(flat: Tensor, target: Tensor) -> Tensor:
    """``flat[b, target[b, j], j]`` for ``flat`` ``(B, K, P)`` and ``target`` ``(B, P)``.

    A large contiguous ``flat`` is gathered as ``(B, K * P)`` rows with flat indices
    ``target * P + j``: one long gather per image, about twice as fast on CPU as a gather
    along the class dimension (whose inner loop has length 1). The indices are built a chunk
    of images at a time. Below a million pixels building the indices costs more than it saves,
    and an image larger than a chunk (a big volume) is gathered without any index tensor.
    """
    b, k, npix = flat.shape
    small = b * npix < FLAT_GATHER_MIN_PIXELS or npix > CHUNK_PIXELS
    if small or not flat.is_contiguous() or flat.requires_grad:  # `out=` below is not differentiable
        return flat.gather(1, target.unsqueeze(1)).squeeze(1)
    rows = flat.view(b, k * npix)
    columns = torch.arange(npix, device=flat.device)
    out = torch.empty(b, npix, dtype=flat.dtype, device=flat.device)
    for i, j in _image_chunks(b, npix):
        torch.gather(rows[i:j], 1, torch.add(columns, target[i:j], alpha=npix), out=out[i:j])
    return out


def label_probabilities(prepared: PreparedInputs) -> Tensor:
    """``s_ij``: the probability of the annotated class at every pixel, shape ``(B, *spatial)``.

    Ignored pixels get NaN.
    """
    b, k = prepared.probs.shape[:2]
    s = _take_label(prepared.probs.reshape(b, k, -1), prepared.target.reshape(b, -1))
    s = s.view(prepared.target.shape)
    return torch.where(prepared.valid, s, torch.full_like(s, float("nan")))


def pixel_label_scores(
    preds: Tensor,
    target: Tensor,
    *,
    ignore_index: int | None = None,
    input_format: str = "auto",
    validate_args: bool = True,
) -> Tensor:
    """Per-pixel label quality ``s_ij`` = predicted probability of the annotated class.

    Args:
        preds: ``(B, K, *spatial)`` probabilities or logits.
        target: ``(B, *spatial)`` integer class ids.
        ignore_index: class id to skip; those pixels get NaN.
        input_format: ``"auto"``, ``"probs"`` or ``"logits"``.
        validate_args: check values (one device synchronisation).

    Returns:
        ``(B, *spatial)`` float tensor in [0, 1] (NaN at ignored pixels).

    Examples:
        >>> import torch
        >>> probs = torch.tensor([[[[0.9, 0.2]], [[0.1, 0.8]]]])  # B=1, K=2, H=1, W=2
        >>> pixel_label_scores(probs, torch.tensor([[[0, 0]]]))
        tensor([[[0.9000, 0.2000]]])
    """
    prepared = prepare_inputs(
        preds,
        target,
        ignore_index=ignore_index,
        input_format=input_format,
        validate_args=validate_args,
    )
    return label_probabilities(prepared)


def _softmin_from_pixels(s: Tensor, valid: Tensor | None, temperature: float) -> Tensor:
    """Softmin over the last dimension of ``s`` (B, P), restricted to ``valid`` (None: all).

    ``sum_j s_j * softmax(-s / T)_j``: the fused, max-shifted ``torch.softmax`` gives the
    weights, a batched dot product the weighted sum; a chunk of images at a time.
    """
    if s.shape[-1] == 0:  # images without pixels have no valid pixel either
        return torch.full(s.shape[:1], float("nan"), dtype=s.dtype, device=s.device)

    def chunk(i: int, j: int) -> Tensor:
        z = s[i:j] * (-1.0 / temperature)
        if valid is not None:  # an image with no valid pixel gets all -inf: softmax gives NaN
            z = z.masked_fill_(~valid[i:j], float("-inf"))
        return torch.linalg.vecdot(torch.softmax(z, dim=-1), s[i:j])

    chunks = _image_chunks(*s.shape)
    if len(chunks) == 1 or s.requires_grad:
        return chunk(0, s.shape[0])
    out = torch.empty(s.shape[0], dtype=s.dtype, device=s.device)
    for i, j in chunks:
        out[i:j] = chunk(i, j)
    return out


class PixelPass:
    """Per-pixel quantities of a batch, flattened to ``(B, P)``, computed once and only when asked.

    ``s`` (the probability of the annotated class) is computed up front; the mispredicted
    pixels (``wrong``, ``mis_idx``), their predicted class (``mis_pred``) and largest
    probability (``mis_pmax``) are computed on first use, so a score that needs only ``s``
    (softmin, CIL) reads the probabilities once. The argmax is resolved only where the
    annotated class is not the most probable one: a pixel counts as correctly classified when
    ``s_ij`` equals the largest probability (ties go to the annotation), and ``mis_pred`` holds
    the first most probable class of the others.

    Attributes:
        s: ``(B, P)`` probability of the annotated class (0 at ignored pixels).
        target: ``(B, P)`` annotated class (0 at ignored pixels).
        valid: ``(B, P)`` bool, or None when no pixel is ignored.
        num_valid: ``(B,)`` valid pixels per image.
        shape: spatial shape of the images.
        num_classes: ``K``.

    Examples:
        >>> import torch
        >>> pp = PixelPass(prepare_inputs(torch.tensor([[[[0.9, 0.2]], [[0.1, 0.8]]]]), torch.tensor([[[0, 0]]])))
        >>> pp.s, pp.mis_idx, pp.mis_pred, pp.mis_pmax
        (tensor([[0.9000, 0.2000]]), tensor([1]), tensor([1]), tensor([0.8000]))
    """

    def __init__(self, prepared: PreparedInputs) -> None:
        probs, target = prepared.probs, prepared.target
        b, k = probs.shape[:2]
        self.shape = tuple(target.shape[1:])
        self.num_classes = k
        self._flat = probs.reshape(b, k, -1)
        npix = self._flat.shape[2]
        self.target = target.reshape(b, -1)
        self.valid = None if prepared.all_valid else prepared.valid.reshape(b, -1)
        if self.valid is not None:
            self.num_valid = self.valid.sum(-1)
        else:
            self.num_valid = torch.full((b,), npix, device=probs.device, dtype=torch.long)
        self.compile = prepared.compile
        #: with ``compile=True``: every pixel's confusion cell (see :func:`.fused.pixel_core`)
        self._cell: Tensor | None = None
        core = None
        if prepared.compile and fused.usable(self._flat, cells=True):
            core = fused.pixel_core(self._flat, self.target, self.valid)
        if core is not None:
            self.s, self.__dict__["wrong"], self._cell = core
            return
        s = _take_label(self._flat, self.target)
        if self.valid is not None:
            s = torch.where(self.valid, s, torch.zeros_like(s))
        self.s = s

    def softmin(self, temperature: float) -> Tensor:
        """``(B,)`` softmin of ``s`` over each image's valid pixels (NaN when there is none)."""
        if self.compile and fused.usable(self._flat, temperature):
            out = torch.empty(self.s.shape[0], dtype=self.s.dtype, device=self.s.device)
            for i, j in _image_chunks(*self.s.shape):  # the kernel's temporaries stay small
                sums = fused.weighted_sums(self.s[i:j], None if self.valid is None else self.valid[i:j], temperature)
                if sums is None:
                    break
                out[i:j] = sums[0] / sums[1]
            else:
                return out
        return _softmin_from_pixels(self.s, self.valid, temperature)

    @cached_property
    def _confusion(self) -> Tensor:
        """``(B, K, K)`` valid pixels per (annotated, predicted) class (compiled pass only)."""
        assert self._cell is not None
        b, k = self.s.shape[0], self.num_classes
        counts = torch.bincount(self._cell.view(-1), minlength=b * (k * k + 1))
        return counts.view(b, k * k + 1)[:, : k * k].view(b, k, k)

    @cached_property
    def mis_counts(self) -> tuple[Tensor, Tensor]:
        """``(B, K)`` mispredicted valid pixels per annotated class, and per predicted class."""
        b, k = self.s.shape[0], self.num_classes
        if self._cell is not None:
            hits = self._confusion.diagonal(dim1=1, dim2=2)
            return self._confusion.sum(2) - hits, self._confusion.sum(1) - hits
        img = self.mis_img * k
        by_true = torch.bincount(img + self.mis_true, minlength=b * k).view(b, k)
        return by_true, torch.bincount(img + self.mis_pred, minlength=b * k).view(b, k)

    @cached_property
    def wrong(self) -> Tensor:
        """``(B, P)`` bool: valid pixels whose annotated class is not the most probable one.

        The largest probability is taken a chunk of images at a time and not kept: a pixel
        is mispredicted when ``s`` lies below it.
        """
        out = torch.empty(self.s.shape, dtype=torch.bool, device=self.s.device)
        for i, j in _image_chunks(*self.s.shape):
            torch.lt(self.s[i:j], self._flat[i:j].amax(dim=1), out=out[i:j])
        if self.valid is not None:
            out &= self.valid
        return out

    @cached_property
    def _mis_pos(self) -> tuple[Tensor, Tensor]:
        img, pix = self.wrong.nonzero().unbind(1)
        return img, pix

    @property
    def mis_img(self) -> Tensor:
        """``(M,)`` image of each valid mispredicted pixel (ascending)."""
        return self._mis_pos[0]

    @cached_property
    def mis_idx(self) -> Tensor:
        """``(M,)`` flat positions (into ``B * P``) of valid mispredicted pixels, ascending."""
        img, pix = self._mis_pos
        return img * self.s.shape[1] + pix

    @cached_property
    def _mis_max(self) -> tuple[Tensor, Tensor]:
        if self._cell is not None:  # compiled pass: the predicted class is known everywhere
            img, pix = self._mis_pos
            k = self.num_classes
            pred = (self._cell.view(-1)[self.mis_idx] % (k * k + 1) % k).long()
            if self._flat.is_contiguous():
                npix = self._flat.shape[2]
                return self._flat.view(-1).take((img * k + pred) * npix + pix), pred
            return self._flat[img, pred, pix], pred
        rows = self._flat.transpose(1, 2)[self._mis_pos]  # (M, K)
        return rows.max(dim=1)

    @property
    def mis_pred(self) -> Tensor:
        """``(M,)`` predicted class (the first most probable) of the mispredicted pixels."""
        return self._mis_max[1]

    @property
    def mis_pmax(self) -> Tensor:
        """``(M,)`` largest probability of the mispredicted pixels."""
        return self._mis_max[0]

    @cached_property
    def class_counts(self) -> Tensor:
        """``(B, K)`` valid pixels annotated with each class."""
        if self._cell is not None:
            return self._confusion.sum(2)
        b, npix = self.s.shape
        counts = torch.zeros(b, self.num_classes, dtype=torch.long, device=self.s.device)
        counts.scatter_add_(1, self.target, torch.ones(1, 1, dtype=torch.long, device=self.s.device).expand(b, npix))
        if self.valid is not None:  # ignored pixels hold class 0
            counts[:, 0] -= npix - self.num_valid
        return counts

    @cached_property
    def class_sums(self) -> Tensor:
        """``(B, K)`` float64 sums of ``s`` over the valid pixels annotated with each class."""
        sums = torch.zeros(self.s.shape[0], self.num_classes, dtype=torch.float64, device=self.s.device)
        return sums.scatter_add_(1, self.target, self.s.double())  # ignored pixels: class 0, s = 0

    @cached_property
    def mis_true(self) -> Tensor:
        """``(M,)`` annotated class of the mispredicted pixels."""
        return self.target.take(self.mis_idx)

    def pred(self) -> Tensor:
        """``(B, *spatial)`` predicted mask (the annotation where it is among the most probable)."""
        if self._cell is not None:  # an ignored pixel's cell K*K gives 0, its safe target
            k = self.num_classes
            pred = (self._cell % (k * k + 1) % k).to(self.target.dtype)
            return pred.view(self.target.shape[0], *self.shape)
        pred = self.target.clone()
        pred.view(-1)[self.mis_idx] = self.mis_pred
        return pred.view(pred.shape[0], *self.shape)


def pixel_pass(prepared: PreparedInputs) -> PixelPass:
    """The :class:`PixelPass` of prepared inputs.

    Examples:
        >>> import torch
        >>> pp = pixel_pass(prepare_inputs(torch.tensor([[[[0.9, 0.2]], [[0.1, 0.8]]]]), torch.tensor([[[0, 0]]])))
        >>> pp.num_valid
        tensor([2])
    """
    return PixelPass(prepared)


def local_scores(
    prepared: PreparedInputs | PixelPass,
    temperature: float = 0.1,
    methods: Sequence[str] = LOCAL_METHODS,
) -> dict[str, Tensor]:
    """The pixel-local image scores of one batch from a single pass over the probabilities.

    Args:
        prepared: output of :func:`~lightning_segqa.functional._inputs.prepare_inputs`, or a
            :class:`PixelPass` already computed from it.
        temperature: softmin temperature.
        methods: which of ``softmin``, ``confidence_in_label``,
            ``correctly_classified_pixels``, ``iou`` to compute.

    Returns:
        Dict of ``(B,)`` scores for the requested methods.

    Examples:
        >>> import torch
        >>> p = prepare_inputs(torch.tensor([[[[0.9, 0.2]], [[0.1, 0.8]]]]), torch.tensor([[[0, 0]]]))
        >>> out = local_scores(p)
        >>> round(out["confidence_in_label"].item(), 4), out["correctly_classified_pixels"].item()
        (0.55, 0.5)
    """
    if not isinstance(prepared, PixelPass) and set(methods) <= S_METHODS:
        out = _compiled_label_scores(prepared, temperature, methods)
        if out is not None:
            return out
    pp = prepared if isinstance(prepared, PixelPass) else pixel_pass(prepared)
    s = pp.s
    denom = pp.num_valid.to(s.dtype)
    out = {}
    if "softmin" in methods:
        out["softmin"] = pp.softmin(temperature)
    if "confidence_in_label" in methods:
        out["confidence_in_label"] = s.sum(-1) / denom
    if "correctly_classified_pixels" in methods:
        num_mis = pp.mis_counts[0].sum(-1)
        out["correctly_classified_pixels"] = (pp.num_valid - num_mis).to(s.dtype) / denom
    if "iou" in methods:
        out["iou"] = _mean_iou(pp).to(s.dtype)
    return out


def _compiled_label_scores(
    prepared: PreparedInputs, temperature: float, methods: Sequence[str]
) -> dict[str, Tensor] | None:
    """Softmin and CIL from the compiled kernel that never stores ``s`` (None: not applicable)."""
    if not prepared.compile:
        return None
    b, k = prepared.probs.shape[:2]
    flat = prepared.probs.reshape(b, k, -1)
    if not fused.usable(flat, temperature):
        return None
    valid = None if prepared.all_valid else prepared.valid.reshape(b, -1)
    sums = fused.label_sums(flat, prepared.target.reshape(b, -1), valid, temperature)
    if sums is None:
        return None
    num, den, total = sums
    out: dict[str, Tensor] = {}
    if "softmin" in methods:
        out["softmin"] = num / den
    if "confidence_in_label" in methods:
        count = flat.shape[2] if valid is None else valid.sum(-1).to(total.dtype)
        out["confidence_in_label"] = total / count
    return out


def _mean_iou(pp: PixelPass) -> Tensor:
    """Mean IoU per image over classes present in the label or the prediction."""
    area_true = pp.class_counts
    mis_true, mis_pred = pp.mis_counts
    inter = (area_true - mis_true).double()
    union = (area_true + mis_pred).double()  # |true| + |pred| - |true & pred|
    present = union > 0
    iou = torch.where(present, inter / union.clamp_min(1), torch.zeros_like(union))
    return iou.sum(-1) / present.sum(-1)


def _public(name: str, doc_example: str):  # noqa: ANN202 - small factory for the four wrappers
    def score(
        preds: Tensor,
        target: Tensor,
        *,
        ignore_index: int | None = None,
        input_format: str = "auto",
        validate_args: bool = True,
        temperature: float = 0.1,
        compile: bool = False,
    ) -> Tensor:
        if not temperature > 0:
            raise ValueError(f"`temperature` must be > 0, got {temperature}.")
        prepared = prepare_inputs(
            preds,
            target,
            ignore_index=ignore_index,
            input_format=input_format,
            validate_args=validate_args,
            compile=compile,
        )
        return local_scores(prepared, temperature, (name,))[name]

    score.__name__ = score.__qualname__ = name
    score.__doc__ = doc_example
    return score


_ARGS = """
    Args:
        preds: ``(B, K, *spatial)`` probabilities or logits (float16/bfloat16/float32/float64).
        target: ``(B, *spatial)`` integer class ids.
        ignore_index: class id excluded from the score.
        input_format: ``"auto"``, ``"probs"`` or ``"logits"``.
        validate_args: check values (one device synchronisation per call).
        temperature: softmin temperature (used by ``softmin`` only).
        compile: use the compiled one-pass kernels (:mod:`~lightning_segqa.functional.fused`):
            same results, read the probabilities once; compiling takes seconds once per process.

    Returns:
        ``(B,)`` scores in [0, 1]; lower means more likely mislabeled; NaN for an image with no
        valid pixel.
"""

softmin = _public(
    "softmin",
    """Softmin of the per-pixel label probabilities (paper eq. 6, the proposed method).

    ``sum_ij s_ij * w_ij`` with ``w = softmax((1 - s) / temperature)`` over the image's valid
    pixels: a soft minimum that is pulled towards the worst-labelled region while still
    seeing the whole image. Computed stably (weights shifted by the image minimum).
"""
    + _ARGS
    + """
    Examples:
        >>> import torch
        >>> probs = torch.tensor([[[[0.9, 0.2]], [[0.1, 0.8]]]])
        >>> softmin(probs, torch.tensor([[[0, 0]]]))
        tensor([0.2006])
""",
)

confidence_in_label = _public(
    "confidence_in_label",
    """Mean per-pixel probability of the annotated class (paper eq. 5, CIL).
"""
    + _ARGS
    + """
    Examples:
        >>> import torch
        >>> probs = torch.tensor([[[[0.9, 0.2]], [[0.1, 0.8]]]])
        >>> confidence_in_label(probs, torch.tensor([[[0, 0]]]))
        tensor([0.5500])
""",
)

correctly_classified_pixels = _public(
    "correctly_classified_pixels",
    """Share of valid pixels whose argmax prediction equals the annotation (paper eq. 1, CCP).
"""
    + _ARGS
    + """
    Examples:
        >>> import torch
        >>> probs = torch.tensor([[[[0.9, 0.2]], [[0.1, 0.8]]]])
        >>> correctly_classified_pixels(probs, torch.tensor([[[0, 0]]]))
        tensor([0.5000])
""",
)

iou = _public(
    "iou",
    """Per-image mean IoU between the predicted and the annotated mask (paper eq. 8).

    The mean runs over the classes present in the annotation or the prediction of that image
    (valid pixels only), so classes absent from both do not count as perfect matches.
"""
    + _ARGS
    + """
    Examples:
        >>> import torch
        >>> probs = torch.tensor([[[[0.9, 0.2]], [[0.1, 0.8]]]])
        >>> iou(probs, torch.tensor([[[0, 0]]]))  # class 0: 1/2, class 1: 0/1
        tensor([0.2500])
""",
)
