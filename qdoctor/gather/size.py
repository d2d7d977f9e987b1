"""Serialized size of a model: the bytes torch.save writes for its state_dict.

The bytes are counted as torch.save writes them, not kept: a buffer holding them would be one more copy of the
model in memory (438 MB for a bert-base in fp32).
"""

from __future__ import annotations

import io
from typing import IO, Any, cast

import torch
from torch import nn


class _CountingSink:
    """A write-only file that keeps no data, only its length (and a position torch.save's zip writer can seek in)."""

    def __init__(self) -> None:
        self.position = self.length = 0

    def flush(self) -> None:
        return None

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def write(self, data: Any) -> int:  # bytes, or any buffer torch's writer hands over
        size = memoryview(data).nbytes
        self.position += size
        self.length = max(self.length, self.position)
        return size

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.length}[whence]
        self.position = base + offset
        return self.position

    def tell(self) -> int:
        return self.position


def serialized_bytes(model: nn.Module) -> int:
    sink = _CountingSink()
    torch.save(model.state_dict(), cast(IO[bytes], sink))
    return sink.length
