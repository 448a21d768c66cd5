"""The leaf pages of an SQLite table, read from the database file itself (https://sqlite.org/fileformat.html).

A table's rows live in the leaves of its b-tree; each leaf holds the rows of one contiguous range of rowids,
which the interior pages above it bound. Two copies of a file whose leaf has the same bytes hold the same rows
in it (when no row spills onto overflow pages), so a census can reuse what it counted in that leaf last time
and read only the leaves that changed. Pure reading: nothing here writes, nothing runs at import.
"""

import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

MIN_ROWID, MAX_ROWID = -(2**63), 2**63 - 1
INTERIOR_TABLE, LEAF_TABLE = 0x05, 0x0D
MAX_DEPTH = 40  # a b-tree of 2**63 rows is shallower; deeper means a cycle or a broken file


@dataclass(frozen=True)
class Leaf:
    """One leaf page of a table: the rowids it may hold (inclusive bounds), its cell count and a digest of
    its bytes."""

    first_rowid: int
    last_rowid: int
    cells: int
    digest: bytes


class NotATableTree(Exception):
    """The pages under the root are not a well-formed table b-tree (the caller reads the table whole)."""


def table_leaves(path: Path, root_page: int) -> Optional[list[Leaf]]:
    """The leaves of the table b-tree rooted at ``root_page`` of the database file at ``path``, in rowid
    order, their ranges covering every rowid exactly once; None when the file is not laid out as SQLite
    documents it (a WITHOUT ROWID table, a broken tree). The file must be checkpointed: a page still in a
    -wal file is not read."""
    try:
        with open(path, "rb") as database:
            header = database.read(100)
            if len(header) < 100 or not header.startswith(b"SQLite format 3\x00"):
                return None
            page_size = struct.unpack(">H", header[16:18])[0]
            page_size = 65536 if page_size == 1 else page_size
            page_count = os.fstat(database.fileno()).st_size // page_size
            reader = _PageReader(database.fileno(), page_size, page_count)
            leaves: list[Leaf] = []
            reader.walk(root_page, MIN_ROWID, MAX_ROWID, 0, leaves)
            return leaves
    except (NotATableTree, OSError, struct.error, IndexError):
        return None


class _PageReader:
    def __init__(self, fd: int, page_size: int, page_count: int):
        self.fd, self.page_size, self.page_count = fd, page_size, page_count
        self.seen: set[int] = set()

    def page(self, number: int) -> bytes:
        if not 2 <= number <= self.page_count or number in self.seen:
            raise NotATableTree(f"page {number}")
        self.seen.add(number)
        return os.pread(self.fd, self.page_size, (number - 1) * self.page_size)

    def walk(self, number: int, first: int, last: int, depth: int, leaves: list) -> None:
        """Append the leaves under page ``number``, which holds the rowids first..last."""
        if depth > MAX_DEPTH:
            raise NotATableTree("too deep")
        page = self.page(number)
        kind, cells = page[0], struct.unpack(">H", page[3:5])[0]
        if kind == LEAF_TABLE:
            leaves.append(Leaf(first, last, cells, hashlib.blake2b(page, digest_size=16).digest()))
            return
        if kind != INTERIOR_TABLE or 12 + 2 * cells > len(page):
            raise NotATableTree(f"page {number} is of kind {kind}")
        for index in range(cells):
            offset = struct.unpack(">H", page[12 + 2 * index:14 + 2 * index])[0]
            child = struct.unpack(">I", page[offset:offset + 4])[0]
            key = read_varint(page, offset + 4)
            # The left child holds the rowids up to and including the key; the next child the ones after it.
            if not first <= key <= last:
                raise NotATableTree(f"page {number}: key {key} outside {first}..{last}")
            self.walk(child, first, key, depth + 1, leaves)
            if key == last:  # nothing can follow the largest rowid
                return
            first = key + 1
        self.walk(struct.unpack(">I", page[8:12])[0], first, last, depth + 1, leaves)


def read_varint(page: bytes, offset: int) -> int:
    """SQLite's variable-length integer at ``offset``, as a signed 64-bit value: seven bits per byte, high bit
    set while more follow, the ninth byte all eight bits."""
    value = 0
    for index in range(8):
        byte = page[offset + index]
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            break
    else:
        value = (value << 8) | page[offset + 8]
    return value - 2**64 if value >= 2**63 else value
