"""Ledger archives: gzip-compressed JSON lines, one event per line, made durable page by page."""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import orjson

from allotment.core.ledger import Event
from allotment.errors import ConfigurationError

__all__ = ["ArchiveWriter"]


class ArchiveWriter:
    """Appends pages of events to a new ``.jsonl.gz`` file, fsynced after each page.

    The file must not exist: an archive is never overwritten.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._raw = self.path.open("xb")
        except FileExistsError:
            raise ConfigurationError(
                f"{self.path} exists; archives are never overwritten"
            ) from None
        except OSError as exc:
            raise ConfigurationError(f"cannot create {self.path}: {exc}") from exc
        self._gzip = gzip.GzipFile(fileobj=self._raw, mode="wb")

    def __call__(self, page: Sequence[Event]) -> None:
        """Write ``page`` and make it durable before returning."""
        for event in page:
            self._gzip.write(orjson.dumps(event.to_dict()) + b"\n")
        self._gzip.flush(zlib.Z_SYNC_FLUSH)
        self._raw.flush()
        os.fsync(self._raw.fileno())

    def close(self) -> None:
        self._gzip.close()
        self._raw.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
