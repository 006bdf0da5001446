"""Hosts of their own on one machine: Linux network namespaces on a bridge, for the multi-host test.

Each host is a namespace with one veth into a bridge in the root namespace (where the test runs and
reaches every host); a host's link is cut by setting the root end of its veth down. Needs root (or
CAP_NET_ADMIN and CAP_SYS_ADMIN); ``unavailable()`` says why not, for a skip.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable
from types import TracebackType


def _ip(*args: str, netns: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = ["ip", *(("netns", "exec", netns, "ip") if netns else ()), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=10)


def unavailable() -> str | None:
    """Why namespaces cannot be made here, or None."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces (ip netns)"
    probe = f"ltdprobe{os.getpid()}"
    made = _ip("netns", "add", probe)
    if made.returncode != 0:
        return f"cannot create a network namespace here: {made.stderr.strip()}"
    _ip("netns", "del", probe)
    return None


class Hosts:
    """``names`` as hosts at ``10.<n>.<m>.(10 + index)``, the root namespace at ``.1``."""

    def __init__(self, names: Iterable[str]) -> None:
        tag = os.getpid() % 100_000
        self.names = list(names)
        self.netns = {name: f"ltd{tag}{name}" for name in self.names}
        self._bridge = f"ltdbr{tag}"
        self._root_end = {name: f"ltv{tag}{name}"[:15] for name in self.names}
        subnet = f"10.{200 + tag % 50}.{tag % 250}"
        self.root_addr = f"{subnet}.1"
        self.addr = {name: f"{subnet}.{10 + i}" for i, name in enumerate(self.names)}

    def __enter__(self) -> "Hosts":
        try:
            self._run(["link", "add", self._bridge, "type", "bridge"], ["addr", "add", f"{self.root_addr}/24", "dev",
                      self._bridge], ["link", "set", self._bridge, "up"])
            for name in self.names:
                ns, root_end, inner = self.netns[name], self._root_end[name], f"ltvi{name}"[:15]
                self._run(["netns", "add", ns], ["link", "add", root_end, "type", "veth", "peer", "name", inner],
                          ["link", "set", inner, "netns", ns], ["link", "set", root_end, "master", self._bridge],
                          ["link", "set", root_end, "up"])
                for args in (["addr", "add", f"{self.addr[name]}/24", "dev", inner], ["link", "set", inner, "up"],
                             ["link", "set", "lo", "up"]):
                    done = _ip(*args, netns=ns)
                    if done.returncode != 0:
                        raise RuntimeError(f"ip -n {ns} {' '.join(args)}: {done.stderr.strip()}")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _run(self, *commands: list[str]) -> None:
        for args in commands:
            done = _ip(*args)
            if done.returncode != 0:
                raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")

    def launcher(self, name: str) -> list[str]:
        """The command prefix that runs a program on host ``name``."""
        return ["ip", "netns", "exec", self.netns[name]]

    def cut(self, name: str) -> None:
        self._run(["link", "set", self._root_end[name], "down"])

    def mend(self, name: str) -> None:
        self._run(["link", "set", self._root_end[name], "up"])

    def close(self) -> None:
        for name in self.names:
            _ip("link", "del", self._root_end[name])  # its peer goes with it
            _ip("netns", "del", self.netns[name])
        _ip("link", "del", self._bridge)
