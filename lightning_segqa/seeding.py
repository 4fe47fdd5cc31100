"""Independent random streams derived from one user seed.

One seed drives several random choices (which scenes are drawn, which images get an error,
which parameters each error takes, which fold holds each image, each fold's weights). Seeding
them all with the same number makes them draw the same sequence: ``torch.randperm(N)`` from two
generators seeded alike returns the same permutation, so the first images picked for errors are
also the first images put into fold 0. :func:`derive_seed` gives every use its own stream.
"""

from __future__ import annotations

import hashlib
import numbers

__all__ = ["derive_seed"]


def derive_seed(seed: int, stream: str) -> int:
    """A seed for the named random stream, independent of every other stream of the same seed.

    The value is a hash of ``seed`` and ``stream`` (BLAKE2b, 63 bits): stable across runs,
    machines and Python versions, and different streams of one seed do not share draws.

    Args:
        seed: the user's seed (any int).
        stream: what the stream is used for, e.g. ``"folds"`` or ``"fold 2"``.

    Returns:
        A non-negative int below ``2**63`` (a valid ``torch.Generator`` seed).

    Raises:
        TypeError: ``seed`` is not an int or ``stream`` not a string.

    Examples:
        >>> derive_seed(0, "folds") == derive_seed(0, "folds")
        True
        >>> derive_seed(0, "folds") != derive_seed(0, "errors") != derive_seed(1, "folds")
        True
    """
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"`seed` must be an int, got {type(seed).__name__} ({seed!r}).")
    if not isinstance(stream, str):
        raise TypeError(f"`stream` must be a string naming the random choice, got {type(stream).__name__}.")
    digest = hashlib.blake2b(f"{int(seed)}/{stream}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1
