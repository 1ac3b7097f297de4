"""Which ordered frame pairs ``(p, q)`` a measure, a flow cache or a loss uses (one enumeration for all of them).

:func:`window_pairs` enumerates the ordered pairs with ``1 ≤ |p − q| ≤ K``, sorted by ``p`` then ``q``: the flows
that :func:`steadyseg.measures.inconsistency` reads, that ``steadyseg flow`` precomputes, and (with ``K = T − 1``)
every ordered pair of a clip. :func:`select_pairs` resolves the pair choices of the consistency loss
(``"all"``, ``"adjacent"``, ``"center"``, a window ``K`` or an explicit list) with it.
"""

from __future__ import annotations

__all__ = ["window_pairs", "select_pairs", "PairSpec"]

PairSpec = str | int | list[tuple[int, int]]


def window_pairs(num_frames: int, window: int = 3) -> list[tuple[int, int]]:
    """All ordered frame pairs ``(p, q)`` with ``1 <= |p - q| <= window``, sorted by ``p`` then ``q``.

    Args:
        num_frames: T ≥ 0, frames ``0 … T−1``.
        window: K ≥ 0 (0 gives no pair).

    Returns:
        ``2·Σ_{d=1..K} (T − d)`` pairs (for K < T) as a list of ``(p, q)`` int tuples.
    """
    if num_frames < 0 or window < 0:
        raise ValueError(f"num_frames and window must be >= 0, got {num_frames}, {window}")
    return [(p, q) for p in range(num_frames) for q in range(max(0, p - window), min(num_frames, p + window + 1))
            if q != p]


def select_pairs(num_frames: int, pairs: PairSpec = "all") -> list[tuple[int, int]]:
    """Ordered frame pairs ``(p, q)``, ``p ≠ q``, of a clip of ``num_frames`` frames, sorted by ``p`` then ``q``.

    Args:
        num_frames: T, frames ``0 … T−1``.
        pairs: ``"all"`` (every ordered pair, ``T·(T−1)``), ``"adjacent"`` (``|p−q| = 1``), an int K ≥ 1
            (``1 ≤ |p−q| ≤ K``, :func:`window_pairs`), ``"center"`` (every frame with the middle one ``T // 2``,
            both directions) or an explicit list of ``(p, q)`` (kept in its order, checked).

    Raises:
        ValueError: an unknown name, a window < 1, or a listed pair with ``p == q`` or outside the clip.
    """
    t = int(num_frames)
    if isinstance(pairs, str):
        if pairs == "all":
            return window_pairs(t, max(t - 1, 0))
        if pairs == "adjacent":
            return window_pairs(t, 1)
        if pairs == "center":
            c = t // 2
            return [(p, q) for p, q in window_pairs(t, max(t - 1, 0)) if c in (p, q)]
        raise ValueError(f"pairs must be 'all', 'adjacent', 'center', an int window or a list, got {pairs!r}")
    if isinstance(pairs, int):
        if pairs < 1:
            raise ValueError(f"pairs window must be ≥ 1, got {pairs}")
        return window_pairs(t, pairs)
    out = [(int(p), int(q)) for p, q in pairs]
    for p, q in out:
        if p == q or not (0 <= p < t and 0 <= q < t):
            raise ValueError(f"pair ({p}, {q}) invalid for a clip of {t} frames")
    return out
