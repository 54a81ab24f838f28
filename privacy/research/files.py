"""The files of an export: the data as CSV or Parquet and a JSON manifest, streamed as one ZIP archive.

Nothing is kept: each batch of rows is encoded and handed back as bytes at once. The archive is written for
an unseekable stream (sizes and checksums follow each entry in a data descriptor), the data first and the
manifest last, because its counts are known only at the end. An archive cut short has no manifest and no
central directory, so no reader takes it for a whole one.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any, Literal, cast

import pyarrow as pa
import pyarrow.parquet as pq

FileFormat = Literal["csv", "parquet"]
MEDIA_TYPE = "application/zip"
MANIFEST_NAME = "manifest.json"
CSV_COMPRESS_LEVEL = 1  # CSV of numbers shrinks about 4x even at level 1; higher levels cost CPU for little
PARQUET_COMPRESSION = "zstd"  # the Parquet file compresses its own pages; the archive stores it as it is


@dataclass(frozen=True)
class Column:
    """A column of the data file: its name, its Parquet type and what it holds (for the manifest)."""

    name: str
    arrow_type: pa.DataType
    description: str


class _Spool:
    """A write-only stream that keeps what was written until it is taken."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def write(self, data: bytes) -> int:
        self._buffer += data
        return len(data)

    def flush(self) -> None:
        """Keep the bytes until taken."""

    def take(self) -> bytes:
        data = bytes(self._buffer)
        self._buffer.clear()
        return data


class _Counted(io.RawIOBase):
    """A zip entry that knows its position: the Parquet writer asks for it to record page offsets."""

    def __init__(self, entry: io.BufferedIOBase | Any) -> None:
        super().__init__()
        self._entry = entry
        self._position = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        written = len(data)
        self._entry.write(data)
        self._position += written
        return written

    def tell(self) -> int:
        return self._position


class ExportArchive:
    """A ZIP archive being streamed: `add` a batch of rows at a time, then `finish` with the manifest."""

    def __init__(self, *, file_format: FileFormat, columns: Sequence[Column]) -> None:
        self.file_format = file_format
        self.data_name = f"data.{file_format}"
        self.columns = tuple(columns)
        self._spool = _Spool()
        # Parquet compresses its own pages; the archive stores the file as it is.
        compression = zipfile.ZIP_DEFLATED if file_format == "csv" else zipfile.ZIP_STORED
        self._zip = zipfile.ZipFile(
            cast("IO[bytes]", self._spool), "w", compression=compression, compresslevel=CSV_COMPRESS_LEVEL
        )
        self._entry = self._zip.open(self.data_name, "w", force_zip64=True)
        self._schema = pa.schema([(column.name, column.arrow_type) for column in self.columns])
        self._parquet: pq.ParquetWriter | None = None
        if file_format == "parquet":
            self._parquet = pq.ParquetWriter(
                _Counted(self._entry), self._schema, compression=PARQUET_COMPRESSION
            )
        else:
            self._write_csv([[column.name] for column in self.columns])

    def add(self, batch: Sequence[list[Any]]) -> bytes:
        """Encode a batch given column by column; return the archive's bytes that are ready."""
        if not batch or not batch[0]:
            return b""
        if self._parquet is not None:
            arrays = [
                pa.array(values, type=column.arrow_type)
                for values, column in zip(batch, self.columns, strict=True)
            ]
            self._parquet.write_batch(pa.record_batch(arrays, schema=self._schema))
        else:
            self._write_csv(
                [
                    [value.isoformat() for value in values] if _temporal(column) else values
                    for values, column in zip(batch, self.columns, strict=True)
                ]
            )
        return self._spool.take()

    def finish(self, manifest: dict[str, Any]) -> bytes:
        """Close the data file, add the manifest and the archive's directory; return the last bytes."""
        if self._parquet is not None:
            self._parquet.close()
        self._entry.close()
        self._zip.writestr(
            MANIFEST_NAME, json.dumps(manifest, indent=2, ensure_ascii=False, default=str) + "\n"
        )
        self._zip.close()
        return self._spool.take()

    def _write_csv(self, columns: Sequence[Sequence[Any]]) -> None:
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows(zip(*columns, strict=True))
        self._entry.write(text.getvalue().encode())


def _temporal(column: Column) -> bool:
    """Say whether a column holds dates or times, which CSV gets in ISO 8601."""
    return bool(pa.types.is_date(column.arrow_type) or pa.types.is_timestamp(column.arrow_type))
