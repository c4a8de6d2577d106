"""Small helpers of :mod:`eghn_md.utils` that several layers share."""

from __future__ import annotations

import numpy as np

from eghn_md.utils import evenly_spaced


def test_evenly_spaced_keeps_the_ends_and_never_repeats():
    assert evenly_spaced(10, 4).tolist() == [0, 3, 6, 9]
    assert evenly_spaced(5, 50).tolist() == [0, 1, 2, 3, 4]  # all of them when k >= n
    assert evenly_spaced(3, 1).tolist() == [0] and evenly_spaced(0, 5).size == 0 and evenly_spaced(7, 0).size == 0
    for n in (1, 2, 13, 1000):
        for k in (1, 2, 7, 999, 5000):
            idx = evenly_spaced(n, k)
            assert idx.dtype == np.int64 and len(idx) == min(n, k)
            assert idx[0] == 0 and (k == 1 or idx[-1] == n - 1) and np.all(np.diff(idx) > 0)
