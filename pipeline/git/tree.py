"""Git trees as sorted, already-serialized entries: change one entry in O(log n) plus a join and a SHA-1.

A directory of 5,000 issue files is 200 KB of tree. Re-parsing and re-serializing it per event costs milliseconds
in Python; splicing one entry into the cached bytes costs a fraction of that. The same splice gives the git delta
from the previous version (copy the prefix, insert the entry, copy the suffix), so a push sends ~100 bytes per
changed tree instead of the whole tree.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass

DIR_MODE = 0o40000
FILE_MODE = 0o100644
_COPY_LIMIT = 0x10000  # git emits copies of at most 64 KiB; stay within what every reader expects
_INSERT_LIMIT = 0x7F


def entry_bytes(name: bytes, mode: int, sha: bytes) -> bytes:
    """One serialized tree entry: `<octal mode> <name>\\0<20-byte sha>`."""
    return b"%o %s\x00%s" % (mode, name, sha)


def sort_key(name: bytes, mode: int) -> bytes:
    # Git orders a subtree as if its name ended in "/".
    return name + b"/" if mode == DIR_MODE else name


@dataclass(frozen=True)
class RawTree:
    """An immutable tree: sort keys and serialized entries in git order, its bytes and its id."""

    keys: tuple[bytes, ...]
    chunks: tuple[bytes, ...]
    data: bytes
    sha: bytes  # 20-byte binary id

    @classmethod
    def build(cls, entries: Iterable[tuple[bytes, int, bytes]]) -> RawTree:
        """From (name, mode, binary sha) entries in any order."""
        ordered = sorted((sort_key(n, m), entry_bytes(n, m, s)) for n, m, s in entries)
        keys = tuple(k for k, _ in ordered)
        chunks = tuple(c for _, c in ordered)
        return cls._of(keys, chunks)

    @classmethod
    def _of(cls, keys: tuple[bytes, ...], chunks: tuple[bytes, ...]) -> RawTree:
        data = b"".join(chunks)
        return cls(keys, chunks, data, hashlib.sha1(b"tree %d\x00" % len(data) + data).digest())

    def find(self, name: bytes, mode: int) -> bytes | None:
        """The binary sha of entry `name` of that kind, or None."""
        key = sort_key(name, mode)
        i = bisect_left(self.keys, key)
        if i < len(self.keys) and self.keys[i] == key:
            return self.chunks[i][-20:]
        return None

    def __len__(self) -> int:
        return len(self.keys)

    def with_entry(self, name: bytes, mode: int, sha: bytes | None) -> tuple[RawTree, bytes]:
        """This tree with `name` set to `sha` (None removes it), and the git delta from this tree to it."""
        key = sort_key(name, mode)
        i = bisect_left(self.keys, key)
        present = i < len(self.keys) and self.keys[i] == key
        new_chunk = entry_bytes(name, mode, sha) if sha is not None else b""
        if present:
            old_len = len(self.chunks[i])
            keys = self.keys if sha is not None else self.keys[:i] + self.keys[i + 1 :]
            chunks = self.chunks[:i] + ((new_chunk,) if sha is not None else ()) + self.chunks[i + 1 :]
        else:
            if sha is None:  # nothing to remove: the same tree, and a delta that copies it whole
                size = len(self.data)
                return self, delta(size, size, ((0, size), (size, 0)), b"")
            old_len = 0
            keys = self.keys[:i] + (key,) + self.keys[i:]
            chunks = self.chunks[:i] + (new_chunk,) + self.chunks[i:]
        tree = RawTree._of(keys, chunks)
        prefix = sum(map(len, self.chunks[:i]))
        suffix_start = prefix + old_len
        copies = ((0, prefix), (suffix_start, len(self.data) - suffix_start))
        return tree, delta(len(self.data), len(tree.data), copies, new_chunk)


def delta(base_size: int, result_size: int, copies: tuple[tuple[int, int], tuple[int, int]], insert: bytes) -> bytes:
    """A git delta: copy `copies[0]` of the base, insert `insert`, copy `copies[1]`."""
    out = bytearray(_varint(base_size) + _varint(result_size))
    (first_offset, first_size), (second_offset, second_size) = copies
    _copy(out, first_offset, first_size)
    for start in range(0, len(insert), _INSERT_LIMIT):
        piece = insert[start : start + _INSERT_LIMIT]
        out.append(len(piece))
        out += piece
    _copy(out, second_offset, second_size)
    return bytes(out)


def _copy(out: bytearray, offset: int, size: int) -> None:
    while size > 0:
        take = min(size, _COPY_LIMIT)
        op, args = 0x80, bytearray()
        for bit in range(4):
            byte = (offset >> (8 * bit)) & 0xFF
            if byte:
                op |= 1 << bit
                args.append(byte)
        encoded = take if take != 0x10000 else 0  # a size of 0 means 64 KiB
        for bit in range(3):
            byte = (encoded >> (8 * bit)) & 0xFF
            if byte:
                op |= 0x10 << bit
                args.append(byte)
        out.append(op)
        out += args
        offset += take
        size -= take


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)
