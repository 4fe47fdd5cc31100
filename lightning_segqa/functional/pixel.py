"""The per-pixel pass every score stands on: ``s_ij``, mispredicted pixels, class counts.

:class:`PixelPass` holds one batch flattened to ``(B, P)`` and computes each per-pixel
quantity once, when a score first asks for it. The image scores built on it live in
:mod:`~lightning_segqa.functional.local` (softmin, CIL, CCP, IoU),
:mod:`~lightning_segqa.functional.confident` and :mod:`~lightning_segqa.functional.coco`.
"""

from __future__ import annotations

from functools import cached_property

import torch
from torch import Tensor

from lightning_segqa.functional import fused
from lightning_segqa.functional._inputs import PreparedInputs, prepare_inputs


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
    the first most probable class of the others. With the compiled kernels (``compile``, see
    :func:`~lightning_segqa.functional.fused.wanted`) one pass gives ``s``, ``wrong`` and every
    pixel's confusion cell up front, and with ``check=True`` the value statistics of the checks
    (``stats``, see :func:`~lightning_segqa.functional._inputs.prepare_with_pass`).

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

    def __init__(self, prepared: PreparedInputs, compile: bool | None = None) -> None:
        self._setup(prepared, compile)
        core = None
        if self.compiled and fused.usable(self._flat, cells=True):
            core = fused.pixel_core(self._flat, self.target, self.valid, prepared.labels_checked)
        if core is not None:
            self._adopt(core[0])
            return
        s = _take_label(self._flat, self.target)
        if self.valid is not None:
            s = torch.where(self.valid, s, torch.zeros_like(s))
        self.s = s

    def _setup(self, prepared: PreparedInputs, compile: bool | None) -> None:
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
        self.compiled = fused.wanted(compile, self._flat)
        #: the value statistics read in the same pass (:meth:`checked` only)
        self.stats: Tensor | None = None
        #: on the compiled pass (see :func:`.fused.pixel_core`): every pixel's confusion cell, the
        #: mispredicted and the low-confidence pixels (int32 flags) and the latter's count per image
        self._cell: Tensor | None = None
        self._wrong_flags: Tensor | None = None
        self.low_flags: Tensor | None = None
        self.low_counts: Tensor | None = None
        #: (temperature, sum w*s, sum w) of the softmin, where the compiled pass took them
        self._softmin_sums: tuple[float, Tensor, Tensor] | None = None
        #: ``(B,)`` mask fingerprints, where the compiled pass took them
        #: (:func:`~lightning_segqa.image_ids.mask_fingerprint` gives the same values)
        self.fingerprint: Tensor | None = None

    def _adopt(self, core: fused.PixelCore, temperature: float | None = None) -> None:
        self.s, self._wrong_flags, self._cell, self.low_flags, self.low_counts = core[:5]
        self.fingerprint = core.fingerprint
        if core.softmin_sums is not None:  # read in the same pass
            self._softmin_sums = (temperature, *core.softmin_sums)

    @classmethod
    def checked(
        cls, prepared: PreparedInputs, compile: bool | None = None, temperature: float | None = None
    ) -> PixelPass | None:
        """The compiled pass together with the value statistics of the checks (``stats``).

        Its class ids need not be checked yet (they are clamped, and their range is in
        ``stats``, see :func:`~lightning_segqa.functional._inputs.prepare_with_pass`).

        Args:
            prepared: the inputs, values not yet checked.
            compile: as :class:`PixelPass`.
            temperature: also take the softmin's sums at this temperature in the same pass
                (:meth:`softmin` then reads them).

        Returns:
            The pass, or None where the compiled kernel does not serve (nothing is read then).

        Examples:
            >>> import torch
            >>> probs = torch.tensor([[[[0.9, 0.2]], [[0.1, 0.8]]]])
            >>> pp = PixelPass.checked(prepare_inputs(probs, torch.tensor([[[0, 0]]])), compile=False)
            >>> pp is None
            True
        """
        pp = cls.__new__(cls)
        pp._setup(prepared, compile)
        if not (pp.compiled and fused.usable(pp._flat, cells=True)):
            return None
        if temperature is not None and not fused.usable(pp._flat, temperature):
            temperature = None
        kwargs = {"check": True, "temperature": temperature}
        core = fused.pixel_core(pp._flat, pp.target, pp.valid, prepared.labels_checked, **kwargs)
        if core is None:
            return None
        pp._adopt(core[0], temperature)
        pp.stats = core[1]
        return pp

    def softmin(self, temperature: float) -> Tensor:
        """``(B,)`` softmin of ``s`` over each image's valid pixels (NaN when there is none).

        Examples:
            >>> import torch
            >>> pp = PixelPass(prepare_inputs(torch.tensor([[[[0.9, 0.2]], [[0.1, 0.8]]]]), torch.tensor([[[0, 0]]])))
            >>> pp.softmin(0.1)
            tensor([0.2006])
        """
        sums = self._softmin_sums
        if sums is not None and sums[0] == temperature:
            return sums[1] / sums[2]
        if self.compiled and fused.usable(self._flat, temperature):
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
        if self._wrong_flags is not None:
            return self._wrong_flags.bool()
        out = torch.empty(self.s.shape, dtype=torch.bool, device=self.s.device)
        for i, j in _image_chunks(*self.s.shape):
            torch.lt(self.s[i:j], self._flat[i:j].amax(dim=1), out=out[i:j])
        if self.valid is not None:
            out &= self.valid
        return out

    @cached_property
    def _mis_pos(self) -> tuple[Tensor, Tensor]:
        if self._wrong_flags is not None:  # compiled pass: positions from one flat `nonzero`
            npix = self.s.shape[1]
            img = torch.div(self.mis_idx, npix, rounding_mode="floor")
            return img, self.mis_idx - img * npix
        img, pix = self.wrong.nonzero().unbind(1)
        return img, pix

    @property
    def mis_img(self) -> Tensor:
        """``(M,)`` image of each valid mispredicted pixel (ascending)."""
        return self._mis_pos[0]

    @cached_property
    def mis_idx(self) -> Tensor:
        """``(M,)`` flat positions (into ``B * P``) of valid mispredicted pixels, ascending."""
        if self._wrong_flags is not None:
            return self._wrong_flags.view(-1).nonzero().squeeze(1)
        img, pix = self._mis_pos
        return img * self.s.shape[1] + pix

    @cached_property
    def _mis_max(self) -> tuple[Tensor, Tensor]:
        if self._cell is not None:  # compiled pass: the predicted class is known everywhere
            k = self.num_classes
            pred = (self._cell.view(-1).index_select(0, self.mis_idx) % (k * k + 1) % k).long()
            if self._flat.is_contiguous():  # (img, pred, pix) lies (img * (K - 1) + pred) * P after (img, 0, pix)
                where = self.mis_idx + (self.mis_img * (k - 1) + pred) * self._flat.shape[2]
                return self._flat.view(-1).index_select(0, where), pred
            img, pix = self._mis_pos
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


def pixel_pass(prepared: PreparedInputs, compile: bool | None = None) -> PixelPass:
    """The :class:`PixelPass` of prepared inputs.

    Args:
        prepared: the checked inputs.
        compile: use the compiled one-pass kernel (None: for large batches; see
            :func:`~lightning_segqa.functional.fused.wanted`).

    Examples:
        >>> import torch
        >>> pp = pixel_pass(prepare_inputs(torch.tensor([[[[0.9, 0.2]], [[0.1, 0.8]]]]), torch.tensor([[[0, 0]]])))
        >>> pp.num_valid
        tensor([2])
    """
    return PixelPass(prepared, compile)
