"""Free space on the directories the session writes to, watched before the disk is full.

A full state disk stops the journal (the orchestrator's and the book of record), a full log disk
stops the session logs and the incident reports: both are noticed here while there is still room
(``orchestrator.min_free_disk_mb``), so the session degrades with an alert instead of finding out
at its next write. A directory on a read-only file system is reported the same way.
"""

from __future__ import annotations

import os
from pathlib import Path

MIB = 1 << 20


class DiskWatch:
    def __init__(self, directories: dict[str, Path], min_free_bytes: int) -> None:
        self._directories = directories
        self._min_free = min_free_bytes

    def problems(self) -> list[str]:
        """One line per directory short of space or not writable; empty when all is well."""
        out = []
        for name, path in self._directories.items():
            try:
                st = os.statvfs(path)
            except OSError as exc:
                out.append(f"{name} directory {path}: {exc.strerror or exc}")
                continue
            if st.f_flag & os.ST_RDONLY:
                out.append(f"{name} directory {path} is on a read-only file system")
                continue
            free = st.f_bavail * st.f_frsize
            if free < self._min_free:
                out.append(f"{name} directory {path} has {free / MIB:.1f} MiB free "
                           f"(under {self._min_free / MIB:g} MiB, orchestrator.min_free_disk_mb)")
        return out
