"""A benchmark's child process, talked to over its stdin and stdout (``StdioChild``), and the one
``bench.bus_latency`` starts (``Peer``, a ``bench._peer``); ``bench._chain.Child`` is the other."""

from __future__ import annotations

import os
import select
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class StdioChild:
    """``python -m MODULE ARG...`` from the repository root: told what to do on stdin, stopped by
    closing stdin (so a killed parent never leaves it behind), its CPU time read from /proc."""

    def __init__(self, module: str, *args: object, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", module, *map(str, args)], cwd=ROOT,
                                     env={**os.environ, **(env or {})}, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

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


class Peer(StdioChild):
    """A ``bench._peer`` child, once it says ``ready``."""

    def __init__(self, mode: str, endpoint: str) -> None:
        super().__init__("bench._peer", mode, endpoint)
        self.mode = mode
        self.expect("ready", 30.0)

    def expect(self, word: str, timeout_s: float) -> None:
        assert self.proc.stdout is not None
        readable, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
        line = self.proc.stdout.readline().strip() if readable else ""
        if line != word:
            raise RuntimeError(f"bench peer {self.mode}: expected {word!r}, got {line!r} "
                               f"(exit code {self.proc.poll()})")
