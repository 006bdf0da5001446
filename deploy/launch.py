"""Start supervisord for a run directory only if no daemon, and nothing of an earlier one, runs there.

    python -m deploy.launch -c deploy/supervisord.conf [other supervisord options]

(``make run`` does this.) The run directory is the one of supervisord's pidfile in that config
(``deploy/supervisord_conf.py`` puts the pidfile, the control socket and every ipc endpoint there).
Before supervisord starts:

1. take the daemon's lock, ``<run_dir>/supervisord.lock`` (``services/run_lock.py``); held: a
   daemon runs there already, and the line says how to reach it;
2. look for what an earlier daemon left behind: a service lock still held (a program orphaned by
   a supervisord that died: it trades on, unsupervised), or an ipc socket in the run directory that
   some process still serves (a squatter: a copy started by hand, a recording played back);
3. if any, refuse with ONE line naming each process and pid and how to stop them, and exit 1;
4. on a single host (ipc), create the CURVE key pairs that are missing (``bus/keys.py``): first
   start of ``make run``. Then write our pid into the lock and exec supervisord with the same arguments: the same
   process (pid) becomes supervisord and keeps the lock's descriptor (below 5, which supervisord
   never closes, and not passed to its programs) until it exits. A stale lock (its holder dead)
   is taken over without a word.

Without this, a second supervisord started every program next to the orphans, and each went FATAL
with "endpoint in use" while the orphans traded on.
"""

from __future__ import annotations

import configparser
import fcntl
import os
import shutil
import socket
import sys
from pathlib import Path

from bus import keys
from deploy.program_settings import settings_of
from proto.commands.base import IDENTITIES
from services import run_lock
from services.settings import SettingsError

DAEMON_LOCK = "supervisord"
EXIT_REFUSED = 1
_KEEP_BELOW_FD = 5  # supervisord's cleanup_fds closes 5 and above on a reload


def config_path(argv: list[str]) -> Path | None:
    for i, arg in enumerate(argv):
        if arg in ("-c", "--configuration") and i + 1 < len(argv):
            return Path(argv[i + 1])
        if arg.startswith("--configuration="):
            return Path(arg.split("=", 1)[1])
        if arg.startswith("-c") and len(arg) > 2:
            return Path(arg[2:])
    return None


def run_dir_of(conf: Path) -> Path:
    """The run directory: where the config puts supervisord's pidfile (else its control socket)."""
    parser = configparser.RawConfigParser()
    if not parser.read(conf):
        raise ValueError(f"cannot read {conf}")
    here = str(conf.resolve().parent)
    for section, key in (("supervisord", "pidfile"), ("unix_http_server", "file")):
        if parser.has_option(section, key):
            return Path(parser.get(section, key).replace("%(here)s", here)).resolve().parent
    raise ValueError(f"{conf}: no [supervisord] pidfile to tell the run directory by")


def unix_socket_holders(path: Path) -> list[int]:
    """Pids of the processes holding a listening unix socket bound to ``path`` (Linux /proc)."""
    inodes = set()
    try:
        lines = Path("/proc/net/unix").read_text().splitlines()[1:]
    except OSError:
        return []
    for line in lines:
        parts = line.split(None, 7)
        if len(parts) == 8 and parts[7] == str(path):
            inodes.add(parts[6])
    links = {f"socket:[{inode}]" for inode in inodes}
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in links for fd in (proc / "fd").iterdir()):
                pids.append(int(proc.name))
        except OSError:  # gone, or not ours to look into
            continue
    return sorted(pids)


def _served(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        return False  # a stale file: nobody accepts on it
    finally:
        probe.close()
    return True


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def leftovers(run_dir: Path) -> list[tuple[str, int]]:
    """(what, pid) of every process still holding a lock or serving a socket in ``run_dir``."""
    found: list[tuple[str, int]] = []
    seen: set[int] = set()
    for name, pid in run_lock.held_locks(run_dir).items():
        if name != DAEMON_LOCK:
            found.append((name, pid))
            seen.add(pid)
    for path in sorted(run_dir.iterdir()):
        if path.is_socket() and _served(path):
            holders = unix_socket_holders(path)
            if not holders and seen:
                continue  # cannot tell who (no /proc): most likely one of the lock holders named above
            for pid in [p for p in holders if p not in seen] if holders else [0]:
                found.append((f"{_command(pid) if pid else 'a process'} serving {path.name}", pid))
                seen.add(pid)
    return found


def refusal(run_dir: Path, found: list[tuple[str, int]]) -> str:
    named = ", ".join(f"{what} pid {pid}" if pid else f"{what} (pid unknown)" for what, pid in found)
    pids = " ".join(str(pid) for _, pid in found if pid)
    return (f"launch: refusing to start: {run_dir} is still in use by processes of an earlier daemon "
            f"(its supervisord is gone; they run unsupervised): {named}. Stop them with `kill {pids}` "
            f"(each stops cleanly on SIGTERM; the session resumes from its journal at the next start), "
            f"then start again")


def _keep_across_exec(lock: run_lock.RunLock) -> None:
    fd = lock.fd
    if fd >= _KEEP_BELOW_FD:
        fd = fcntl.fcntl(lock.fd, fcntl.F_DUPFD, 3)
        if fd >= _KEEP_BELOW_FD:
            os.close(fd)
            fd = os.dup2(lock.fd, 3)
        os.close(lock.fd)
        lock.fd = fd
    os.set_inheritable(fd, True)


def ensure_keys(conf: Path) -> str | None:
    """Create the CURVE key pairs the programs will look for and miss (``bus.keys``), when the whole
    daemon is on this host (ipc); across hosts each key is made on its host and its public half copied
    to the others (docs/deploy-multihost.md), so a missing one is left for its program to name at
    start. What stops the start, or None."""
    try:
        settings = settings_of(conf)
    except SettingsError as exc:  # the programs will say it, one line each, and exit 78
        print(f"launch: settings: {str(exc).splitlines()[0]} (the programs will refuse to start)", file=sys.stderr)
        return None
    if not settings.bus.curve or settings.bus.transport != "ipc":
        return None
    try:
        made = keys.ensure(settings.paths.keys, list(IDENTITIES))
    except OSError as exc:
        return f"cannot create the CURVE keys in {settings.paths.keys}: {exc}"
    if made:
        print(f"launch: created CURVE key pairs in {settings.paths.keys}: {', '.join(i.name for i in made)}")
    return None


def console_hint(conf: Path) -> str | None:
    """Where the web console will answer, when this host runs it: printed before supervisord takes
    over the terminal (the console's own lines go to its program log)."""
    try:
        if "[program:console]" not in conf.read_text(encoding="utf-8"):
            return None
        settings = settings_of(conf)
    except (OSError, SettingsError):
        return None
    cfg, state = settings.console, settings.paths.state_dir
    first = state / "console" / "admin.password"
    return (f"launch: web console at http://{cfg.host}:{cfg.port}/ "
            + (f"(first login: user admin, password in {first} once it has started)"
               if not (state / "console" / "users.json").exists() else "(its users: `tradectl console users`)"))


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    conf = config_path(args)
    if conf is None:
        print("launch: usage: python -m deploy.launch -c SUPERVISORD_CONF [supervisord options]", file=sys.stderr)
        return 2
    try:
        run_dir = run_dir_of(conf)
    except ValueError as exc:
        print(f"launch: {exc}", file=sys.stderr)
        return 2
    run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        lock = run_lock.acquire(run_dir, DAEMON_LOCK)
    except run_lock.LockHeld as exc:
        print(f"launch: refusing to start: a daemon already runs on {run_dir} (supervisord pid {exc.pid or '?'}); "
              f"see it with `supervisorctl -c {conf} status`, stop it with `supervisorctl -c {conf} shutdown`",
              file=sys.stderr)
        return EXIT_REFUSED
    found = leftovers(run_dir)
    if found:
        lock.release()
        print(refusal(run_dir, found), file=sys.stderr)
        return EXIT_REFUSED
    problem = ensure_keys(conf)
    if problem:
        lock.release()
        print(f"launch: {problem}", file=sys.stderr)
        return 2
    hint = console_hint(conf)
    if hint:
        print(hint)
    supervisord = Path(sys.executable).parent / "supervisord"
    binary = str(supervisord) if supervisord.exists() else shutil.which("supervisord")
    if binary is None:
        lock.release()
        print(f"launch: supervisord not found next to {sys.executable} nor on PATH", file=sys.stderr)
        return 2
    _keep_across_exec(lock)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(binary, [binary, *args])
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
