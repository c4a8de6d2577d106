"""A benchmark dataset held in memory as a list of single-graph samples."""

from __future__ import annotations

from typing import Sequence

from eghn_md.data.batch import GraphBatch

__all__ = ["GraphList"]


class GraphList(Sequence[GraphBatch]):
    """Sequence over ``self._graphs`` (filled by the subclass); slices return lists of samples."""

    _graphs: list[GraphBatch]

    def __len__(self) -> int:
        return len(self._graphs)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self._graphs[j] for j in range(*i.indices(len(self)))]
        return self._graphs[i]
