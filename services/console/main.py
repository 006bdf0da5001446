"""The console process: start-up, then the web loop, top to bottom.

1. Read the settings (bad ones: one line each and exit 78, as every service).
2. Make the first user if there is none (its password in a 0600 file, printed once).
3. Read the day's transitions and events from the session's event log, then follow the bus and poll
   the snapshot (``feed.py``) into the view (``view.py``).
4. Serve the page on ``console.host:console.port`` (loopback by default) and print its URL.

Not one of the trading group: the orchestrator does not wait for it, a console that dies or hangs
changes nothing in the session, and supervisord restarts it. It exits when supervisord, its
parent, is gone (nothing would stop it on the next ``make run``, and its port would be taken).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import signal
import sys

import zmq
from aiohttp import web

from bus import Endpoints, MissingKey, security
from bus.curve import Security
from services.console.auth import Users
from services.console.feed import BusFeed, SnapshotPoll, read_history
from services.console.view import SessionView
from services.console.web import Console, Hub
from services.parent_watch import ParentWatch
from services.runtime import configure_logging, exit_bad_settings, load_settings_or_exit
from services.settings import Settings

log = logging.getLogger("console")
IDENTITY = "console"  # its own key: the snapshot polls (queries); controls go as each user's own key
PARENT_CHECK_S = 2.0


def main() -> None:
    settings = load_settings_or_exit("console")
    configure_logging(settings.logs)
    try:
        sec = security(settings.bus, settings.paths.keys, IDENTITY)
    except MissingKey as exc:
        exit_bad_settings("console", [str(exc)])
    users = Users(settings.paths.state_dir / "console", settings.paths.keys)
    try:
        first = users.ensure_first()
    except (OSError, ValueError) as exc:
        exit_bad_settings("console", [f"console users in {users.path}: {exc}"])
    if first is not None:
        password, path = first
        # Printed once, on the first start only; the file keeps it (0600) until the operator removes it.
        print(f"console: first start: user admin, password {password} (also in {path}, mode 0600)", flush=True)
    asyncio.run(serve(settings, users, sec))


async def serve(settings: Settings, users: Users, sec: Security) -> None:
    loop = asyncio.get_running_loop()
    hub = Hub()
    view = SessionView(settings.console, lambda kind, data: loop.call_soon_threadsafe(hub.publish, kind, data))
    midnight = dt.datetime.now().astimezone().replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    history_until = read_history(settings.paths.log_dir, view, midnight)
    ctx = zmq.Context()
    endpoints = Endpoints(settings.bus, settings.paths.run_dir)
    feed = BusFeed(ctx, endpoints, sec, view, history_until)
    poll = SnapshotPoll(ctx, endpoints, settings.bus, sec, IDENTITY, view, settings.console.poll_interval_s)
    feed.start()
    poll.start()
    runner = web.AppRunner(Console(settings, view, users, hub, ctx).app(), access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    cfg = settings.console
    try:
        await web.TCPSite(runner, cfg.host, cfg.port).start()
    except OSError as exc:
        log.critical("cannot listen on %s:%d: %s", cfg.host, cfg.port, exc)
        sys.exit(1)
    log.info("console started (pid %d), serving http://%s:%d/ (users: %s; `tradectl console add-user NAME --role "
             "reader|operator` adds one)", os.getpid(), cfg.host, cfg.port, ", ".join(users.names()))
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):  # supervisorctl stop: close the pages, exit 0
        loop.add_signal_handler(signum, stop.set)
    parent = ParentWatch(os.environ)
    try:
        while not stop.is_set():
            if parent.check():
                log.critical("%s: the console stops", parent.lost)
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), PARENT_CHECK_S)
    finally:
        feed.stop()
        poll.stop()
        await runner.cleanup()
        feed.join(2.0)
        poll.join(3.0)
        ctx.term()
        log.info("console stopped")
