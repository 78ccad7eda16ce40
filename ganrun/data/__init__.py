"""Datasets: each config option of the ``dataset`` group builds a ``DataSource``.

A source knows its ``data_shape`` and ``num_classes`` without reading any file
(models are built from them, e.g. by ``ganrun sample``), and yields an endless,
deterministic stream of batches: batch ``i`` depends only on (seed, i), so a
resumed run continues with exactly the batches an uninterrupted run would see.
"""

from ganrun.data.base import ArraySource, DataSource, PointSource, StreamSource

__all__ = ["ArraySource", "DataSource", "PointSource", "StreamSource"]
