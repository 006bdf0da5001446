"""The parent's side of a ``bench._peer`` child (``bench.bus_latency``): start it, tell it what to
do on stdin, read its CPU time, stop it by closing stdin."""

from __future__ import annotations

import select
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class Peer:
    """A ``bench._peer`` child: started, told what to do on stdin, stopped by closing stdin."""

    def __init__(self, mode: str, endpoint: str) -> None:
        self.mode = mode
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench._peer", mode, endpoint],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
        )
        self.expect("ready", 30.0)

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def expect(self, word: str, timeout_s: float) -> None:
        assert self.proc.stdout is not None
        readable, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
        line = self.proc.stdout.readline().strip() if readable else ""
        if line != word:
            raise RuntimeError(f"bench peer {self.mode}: expected {word!r}, got {line!r} "
                               f"(exit code {self.proc.poll()})")

    def cpu_ticks(self) -> int:
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime (fields 14 and 15 of stat)

    def close(self) -> None:
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
