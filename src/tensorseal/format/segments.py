"""Segment layout and nonce derivation.

Each tensor's bytes (in data-region order) are cut into ``segment_size`` pieces; the last
piece of a tensor may be shorter; an empty tensor has no segment. Segment ``g`` (counted
across the whole file) has its 16-byte tag at ``tags_offset + 16 * g``. The nonce of a
segment is ``tensor_index (u32 BE) | segment_index (u32 BE) | last (u32 BE, 0 or 1)``:
within one file every segment has its own (tensor, segment) pair, so no nonce repeats
under the file's data key, and the data key is new for every file.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ..errors import LimitExceededError
from . import constants as C

_NONCE = struct.Struct(">III")


def nonce(tensor_index: int, segment_index: int, last: bool) -> bytes:
    return _NONCE.pack(tensor_index, segment_index, 1 if last else 0)


def segment_count(nbytes: int, segment_size: int) -> int:
    n = -(-nbytes // segment_size)
    if n > C.MAX_SEGMENTS_PER_TENSOR:
        raise LimitExceededError(f"a tensor of {nbytes} bytes needs more than 2^32 segments")
    return n


@dataclass(frozen=True, slots=True)
class Segment:
    """One AEAD unit: where its bytes lie in the data region and which tag is its own."""

    tensor: int  # index of the tensor in data order
    index: int  # segment number within the tensor
    last: bool
    start: int  # offset in the data region
    length: int
    tag_index: int  # global segment number: position in the tag table

    @property
    def nonce(self) -> bytes:
        return nonce(self.tensor, self.index, self.last)


@dataclass(frozen=True)
class TensorRun:
    """A contiguous run of the data region: one tensor (or the whole blob)."""

    start: int
    length: int
    first_tag: int  # global index of its first segment


def plan_runs(lengths: Sequence[int], segment_size: int) -> tuple[list[TensorRun], int]:
    """Lay out runs back to back; returns the runs and the total segment count."""
    runs, offset, tags = [], 0, 0
    for length in lengths:
        runs.append(TensorRun(offset, length, tags))
        offset += length
        tags += segment_count(length, segment_size)
    return runs, tags


def run_segments(tensor: int, run: TensorRun, segment_size: int) -> Iterator[Segment]:
    n = segment_count(run.length, segment_size)
    for i in range(n):
        start = i * segment_size
        length = min(segment_size, run.length - start)
        yield Segment(tensor, i, i == n - 1, run.start + start, length, run.first_tag + i)
