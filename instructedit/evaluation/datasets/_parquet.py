"""Images stored as parquet cells (Hugging Face datasets: ``{"bytes", "path"}`` structs), read lazily."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from .sample import ImageRef


class ParquetCells:
    """Reads one image cell on demand, keeping the last row group's image ``columns`` in memory (rows are visited
    in order, so each row group is decoded once)."""

    def __init__(self, columns: Sequence[str]) -> None:
        self.columns = list(columns)
        self._key: tuple[Path, int] | None = None
        self._table: Any = None

    def cell(self, path: Path, group: int, row: int, column: str) -> bytes:
        import pyarrow.parquet as pq

        if self._key != (path, group):
            self._table = pq.ParquetFile(path).read_row_group(group, columns=self.columns)
            self._key = (path, group)
        value = self._table.column(column)[row].as_py()
        data = value.get("bytes") if isinstance(value, dict) else value
        if not isinstance(data, bytes | bytearray) or not data:
            raise ValueError(f"column '{column}' holds no image bytes")
        return bytes(data)

    def ref(self, where: tuple[Path, int, int], column: str, sample_id: str,
            convert: Callable[[Image.Image], Image.Image] | None = None) -> ImageRef:
        """A lazy :class:`ImageRef` to the image in ``column`` of the row at ``where`` (file, row group, row)."""
        return ImageRef(lambda: ImageRef(self.cell(*where, column)).open(), convert=convert,
                        description=f"{where[0].name}[{sample_id}].{column}")
