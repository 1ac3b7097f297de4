"""The DAVIS 2016 sequences that steadyseg's real-data tests and benchmarks evaluate.

The data layout (``<data>/davis2016/JPEGImages/480p/<seq>``, ``<data>/davis2016/Annotations/480p/<seq>``,
``<data>/davis2017-osvos/<seq>``) is described in the project docs; this module only names the sequences, so that
every benchmark and test reports on the same set.
"""

from __future__ import annotations

__all__ = ["DAVIS2016_SEQUENCES"]

# Eight sequences of the DAVIS 2016 validation set (480p), chosen to mix slow and fast motion, thin structures
# and occlusions; each has OSVOS results. Order is the order of every table.
DAVIS2016_SEQUENCES: tuple[str, ...] = (
    "blackswan", "bmx-trees", "camel", "car-shadow", "dog", "horsejump-high", "kite-surf", "libby",
)
