"""The recording file format: raw frames with their receive time, an index, and a footer.

Layout of one file (all integers little-endian)::

    header   32 B  "<8sHHIQQ": magic b"TDBUSREC", version 1, header size 32, part number,
                   recording id (shared by every part of one recording), created (ns)
    chunks   each  "<BII": kind, payload length, CRC-32 of the payload; then the payload
        b"J"  metadata, UTF-8 JSON (the first chunk: tool, prefixes, transport, host, part)
        b"M"  one message: "<qH" receive time (ns, wall clock), topic length; the topic bytes;
              the message frame exactly as received (the envelope, whose ts_ns is the publish time)
        b"X"  the index (last chunk of a closed file): "<I" count, then count x "<QqQ"
              (file offset of a message chunk, its receive time, its message number in this part),
              one entry every INDEX_EVERY messages
    footer   40 B  "<8sQQqq": magic b"TDBUSEND", offset of the index chunk, message count,
                   first and last receive time (ns)

A file cut short (a crash, a full disk) has no index and no footer: the reader then scans the
chunks from the start and stops at the first one that is incomplete or fails its CRC, and says so.
Rotation (``--max-bytes``) closes the current part properly and goes on in ``FILE.1``, ``FILE.2``,
...; the reader follows the parts that carry the same recording id as ``FILE``.
"""

from __future__ import annotations

import bisect
import json
import mmap
import os
import queue
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import msgspec

MAGIC, END_MAGIC, VERSION = b"TDBUSREC", b"TDBUSEND", 1
HEADER = struct.Struct("<8sHHIQQ")
CHUNK = struct.Struct("<BII")
MSG = struct.Struct("<qH")
INDEX_ENTRY = struct.Struct("<QqQ")
COUNT = struct.Struct("<I")
FOOTER = struct.Struct("<8sQQqq")
KIND_META, KIND_MSG, KIND_INDEX = ord("J"), ord("M"), ord("X")
INDEX_EVERY = 1000
# The writer hands this much to its thread at a time: few, large writes (and no disk wait in the
# receive loop).
FLUSH_BYTES = 1 << 20
MAX_QUEUED = 256  # x FLUSH_BYTES: beyond that the receive loop waits for the disk


class RecordingError(Exception):
    pass


def part_path(path: Path, part: int) -> Path:
    return path if part == 0 else path.with_name(f"{path.name}.{part}")


class _FileThread:
    """Owns the open file; does every write, so a slow disk never stalls the receive loop."""

    def __init__(self) -> None:
        self._q: queue.Queue[tuple[str, Any]] = queue.Queue(MAX_QUEUED)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="record-writer", daemon=True)
        self._thread.start()

    def put(self, op: str, arg: Any = None) -> None:
        if self._error is not None:
            raise RecordingError(f"writing the recording failed: {self._error}")
        self._q.put((op, arg))

    def _run(self) -> None:
        f: BinaryIO | None = None
        while True:
            op, arg = self._q.get()
            try:
                if op == "open":
                    f = open(arg, "wb")
                elif op == "write":
                    assert f is not None
                    f.write(arg)
                elif op == "close":
                    if f is not None:
                        f.flush()
                        os.fsync(f.fileno())
                        f.close()
                        f = None
                elif op == "flush" and f is not None:
                    f.flush()
                elif op == "stop":
                    return
            except Exception as exc:  # noqa: BLE001 (reported on the next put() and at stop)
                self._error = self._error or exc  # the first failure is the one that explains

    def stop(self) -> None:
        self._q.put(("close", None))
        self._q.put(("stop", None))
        self._thread.join()
        if self._error is not None:
            raise RecordingError(f"writing the recording failed: {self._error}")


class Writer:
    """Appends messages to a recording; ``close()`` writes the index and footer of the last part."""

    def __init__(self, path: Path, meta: dict[str, Any], *, max_bytes: int | None = None,
                 created_ns: int, index_every: int = INDEX_EVERY) -> None:
        self.path = path
        self._meta = meta
        self._max_bytes = max_bytes
        self.rec_id = created_ns
        self._index_every = index_every
        self._io = _FileThread()
        self.part = -1
        self.parts: list[Path] = []
        self.messages = 0  # all parts
        self.bytes = 0  # all parts, closed ones included
        self._open_part(created_ns)

    def _open_part(self, now_ns: int) -> None:
        self.part += 1
        p = part_path(self.path, self.part)
        self.parts.append(p)
        self._io.put("open", p)
        self._buf = bytearray(HEADER.pack(MAGIC, VERSION, HEADER.size, self.part, self.rec_id, now_ns))
        meta = msgspec.json.encode({**self._meta, "part": self.part, "format_version": VERSION})
        self._buf += CHUNK.pack(KIND_META, len(meta), zlib.crc32(meta)) + meta
        self._written = 0  # bytes of this part already handed to the thread
        self._index: list[tuple[int, int, int]] = []
        self._count = 0
        self._first_ns = self._last_ns = 0

    def write(self, recv_ns: int, topic: bytes, data: bytes) -> None:
        payload = MSG.pack(recv_ns, len(topic)) + topic + data
        buf = self._buf
        if self._count % self._index_every == 0:
            self._index.append((self._written + len(buf), recv_ns, self._count))
        if self._count == 0:
            self._first_ns = recv_ns
        self._last_ns = recv_ns
        buf += CHUNK.pack(KIND_MSG, len(payload), zlib.crc32(payload))
        buf += payload
        self._count += 1
        self.messages += 1
        if self._max_bytes is not None and self._written + len(buf) >= self._max_bytes:
            self._close_part()
            self._open_part(recv_ns)
        elif len(buf) >= FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        """Hand what is buffered to the file thread (called on a full buffer and when idle, so a
        crash loses at most the last moments)."""
        if self._buf:
            self._written += len(self._buf)
            self.bytes += len(self._buf)
            self._io.put("write", bytes(self._buf))
            self._buf = bytearray()
            self._io.put("flush")

    def _close_part(self) -> None:
        self.flush()
        index_offset = self._written
        body = COUNT.pack(len(self._index)) + b"".join(INDEX_ENTRY.pack(*e) for e in self._index)
        tail = CHUNK.pack(KIND_INDEX, len(body), zlib.crc32(body)) + body
        tail += FOOTER.pack(END_MAGIC, index_offset, self._count, self._first_ns, self._last_ns)
        self._written += len(tail)
        self.bytes += len(tail)
        self._io.put("write", tail)
        self._io.put("close")

    def close(self) -> None:
        self._close_part()
        self._io.stop()


# -- reading ---------------------------------------------------------------------------------------


@dataclass
class Part:
    path: Path
    part: int
    rec_id: int
    created_ns: int
    meta: dict[str, Any]
    size: int
    indexed: bool  # closed cleanly: index and footer present and valid
    index: list[tuple[int, int, int]] = field(default_factory=list)
    count: int | None = None  # from the footer
    problem: str = ""  # why the reader had to scan, or where the scan stopped


class Reader:
    """Messages of a recording (every part), in order: ``(recv_ns, topic, data)``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        first = self._open(path)
        self.parts = [first]
        n = 1
        while part_path(path, n).exists():
            p = self._open(part_path(path, n))
            if p.rec_id != first.rec_id or p.part != n:
                break  # a leftover of an older recording: not ours
            self.parts.append(p)
            n += 1

    @property
    def meta(self) -> dict[str, Any]:
        return self.parts[0].meta

    @staticmethod
    def _open(path: Path) -> Part:
        with open(path, "rb") as f:
            data = f.read(HEADER.size)
            size = os.fstat(f.fileno()).st_size
            if len(data) < HEADER.size:
                raise RecordingError(f"{path}: too short for a recording ({size} bytes)")
            magic, version, hsize, part, rec_id, created = HEADER.unpack(data)
            if magic != MAGIC:
                raise RecordingError(f"{path}: not a tradectl bus recording (bad magic)")
            if version != VERSION:
                raise RecordingError(f"{path}: format version {version}, this build reads {VERSION}")
            meta: dict[str, Any] = {}
            head = f.read(CHUNK.size)
            if len(head) == CHUNK.size and head[0] == KIND_META:
                _, length, crc = CHUNK.unpack(head)
                raw = f.read(length)
                if len(raw) == length and zlib.crc32(raw) == crc:
                    meta = json.loads(raw)
            p = Part(path, part, rec_id, created, meta, size, False)
            if size >= hsize + FOOTER.size:
                f.seek(size - FOOTER.size)
                end, index_offset, count, _first, _last = FOOTER.unpack(f.read(FOOTER.size))
                if end == END_MAGIC and hsize <= index_offset < size - FOOTER.size:
                    f.seek(index_offset)
                    kind, length, crc = CHUNK.unpack(f.read(CHUNK.size))
                    body = f.read(length)
                    if kind == KIND_INDEX and len(body) == length and zlib.crc32(body) == crc:
                        (n,) = COUNT.unpack_from(body)
                        p.index = [INDEX_ENTRY.unpack_from(body, COUNT.size + i * INDEX_ENTRY.size) for i in range(n)]
                        p.indexed, p.count = True, count
            if not p.indexed:
                p.problem = "no index or footer (not closed cleanly): scanned"
            return p

    def __iter__(self) -> Iterator[tuple[int, bytes, bytes]]:
        return self.messages()

    def messages(self, start_ns: int | None = None) -> Iterator[tuple[int, bytes, bytes]]:
        """Every message with receive time >= ``start_ns`` (all by default). The index takes the
        reader straight to the right neighbourhood; the scan from there is short."""
        for p in self.parts:
            offset = HEADER.size
            if start_ns is not None and p.index:
                times = [e[1] for e in p.index]
                i = bisect.bisect_right(times, start_ns) - 1
                if i >= 0:
                    offset = p.index[i][0]
            for recv_ns, topic, data in self._scan(p, offset):
                if start_ns is None or recv_ns >= start_ns:
                    yield recv_ns, topic, data

    def _scan(self, p: Part, offset: int) -> Iterator[tuple[int, bytes, bytes]]:
        if p.size <= offset:
            return
        with open(p.path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            size, unpack_chunk, unpack_msg = len(mm), CHUNK.unpack_from, MSG.unpack_from
            while offset + CHUNK.size <= size:
                kind, length, crc = unpack_chunk(mm, offset)
                start, end = offset + CHUNK.size, offset + CHUNK.size + length
                if kind == KIND_INDEX and p.indexed:
                    return
                if kind not in (KIND_MSG, KIND_META) or end > size:
                    break
                payload = mm[start:end]
                if zlib.crc32(payload) != crc:
                    break
                offset = end
                if kind == KIND_MSG:
                    recv_ns, tlen = unpack_msg(payload)
                    t0 = MSG.size
                    yield recv_ns, payload[t0:t0 + tlen], payload[t0 + tlen:]
            if offset < size:
                where = "no index (not closed cleanly): scanned" if not p.indexed else "damaged"
                p.problem = f"{where}; the last {size - offset} bytes (from offset {offset}) are incomplete or corrupt"
