"""The console's web server (aiohttp): the login, the page, its live stream and its controls.
The HTTP contract the page uses is in docs/console.md.

Every route but the login and the static files needs a login session (its cookie); every POST but
the login needs the session's CSRF token in ``X-CSRF-Token`` and, when the browser sends one, an
``Origin`` of this server. A reader sees everything and presses nothing: the server refuses her
controls, whatever the page does.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jinja2
import zmq
from aiohttp import web

from services.console import controls, session_log
from services.console.auth import Login, LoginThrottle, Sessions, Users, csrf_ok
from services.console.reports import Reports
from services.console.view import SessionView
from services.log_escape import escape
from services.settings import Settings

log = logging.getLogger("console")

HERE = Path(__file__).parent
COOKIE = "ltd_console"
STREAM_QUEUE = 256  # pushes waiting for one page; a page this far behind is cut (it reconnects)
MAX_STREAMS = 64  # open pages at once: each holds a queue and a snapshot a second
MAX_LOGINS_WAITING = 8  # password checks queued (each ~50 ms of scrypt): a flood is answered "busy"
SNAPSHOT_EVERY_S = 1.0
HEADERS = {
    # The page loads only its own files; nothing may frame it (clickjacking a control).
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
                               "form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Hub:
    """The open pages' live streams: each a bounded queue, filled from the loop's thread."""

    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[tuple[str, Any] | None]] = set()
        self.cut = 0

    def open(self) -> asyncio.Queue[tuple[str, Any] | None] | None:
        """A new page's queue, or None when MAX_STREAMS are open already."""
        if len(self._queues) >= MAX_STREAMS:
            return None
        queue: asyncio.Queue[tuple[str, Any] | None] = asyncio.Queue(STREAM_QUEUE)
        self._queues.add(queue)
        return queue

    def close(self, queue: asyncio.Queue[tuple[str, Any] | None]) -> None:
        self._queues.discard(queue)

    def publish(self, kind: str, data: Any) -> None:
        for queue in list(self._queues):
            try:
                queue.put_nowait((kind, data))
            except asyncio.QueueFull:
                self.cut += 1
                self._queues.discard(queue)
                queue.get_nowait()
                queue.put_nowait(None)  # the stream ends; the page's EventSource reconnects

    def __len__(self) -> int:
        return len(self._queues)


class Console:
    def __init__(self, settings: Settings, view: SessionView, users: Users, hub: Hub, ctx: zmq.Context) -> None:
        self.settings = settings
        self.cfg = settings.console
        self.view = view
        self.users = users
        self.hub = hub
        self.ctx = ctx
        self.sessions = Sessions(self.cfg.session_idle_s, self.cfg.session_max_s, self.cfg.max_sessions)
        self.throttle = LoginThrottle(self.cfg.login_max_failures, self.cfg.login_window_s, self.cfg.login_lockout_s)
        self.reports = Reports(settings.paths.log_dir)
        self.templates = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True)
        self.controls_sent = 0
        self.controls_refused = 0
        self._password_checks = ThreadPoolExecutor(1, thread_name_prefix="console-login")
        self._logins_waiting = 0

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._headers], client_max_size=64 << 10)
        app.add_routes([
            web.get("/login", self.login_page), web.post("/login", self.login),
            web.post("/logout", self._post(self.logout)),
            web.get("/", self._page(self.index)),
            web.get("/api/snapshot", self._api(self.snapshot)),
            web.get("/api/stream", self._api(self.stream)),
            web.get("/api/prices", self._api(self.prices)),
            web.get("/api/reports", self._api(self.report_list)),
            web.get("/api/reports/{name}", self._api(self.report)),
            web.get("/api/logs", self._api(self.logs)),
            web.post("/api/control/{name}", self._post(self.control)),
            web.static("/static", HERE / "static", append_version=False),
        ])
        return app

    # --- the guards -----------------------------------------------------------------------------

    @web.middleware
    async def _headers(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        response.headers.update(HEADERS)
        if request.path.startswith("/api/") or request.path in ("/", "/login"):
            response.headers["Cache-Control"] = "no-store"
        return response

    def _login_of(self, request: web.Request) -> Login | None:
        return self._live(self.sessions.get(request.cookies.get(COOKIE)))

    def _live(self, login: Login | None) -> Login | None:
        """The login, if its user may still use the console: removed, or her key revoked or given
        another role since she logged in, it ends now."""
        if login is None:
            return None
        try:
            role = self.users.role_of(login.user)
        except (OSError, ValueError):
            role = None  # the users file cannot be read: fail closed
        if role != login.role:
            self.sessions.close(login.token)
            log.warning("login of %s ended: %s", login.user, "no longer a user or a key" if role is None else
                        f"her role is now {role}")
            return None
        return login

    def _page(self, handler: Callable[[web.Request, Login], Awaitable[web.StreamResponse]]) -> Handler:
        return self._guarded(handler, page=True)

    def _api(self, handler: Callable[[web.Request, Login], Awaitable[web.StreamResponse]]) -> Handler:
        return self._guarded(handler)

    def _post(self, handler: Callable[[web.Request, Login], Awaitable[web.StreamResponse]]) -> Handler:
        return self._guarded(handler, post=True)

    def _guarded(self, handler: Callable[[web.Request, Login], Awaitable[web.StreamResponse]], *,
                 page: bool = False, post: bool = False) -> Handler:
        """``handler`` behind a live login (a page without one goes to /login, an API call gets 401);
        a POST also behind the login's CSRF token and this server's own Origin."""
        async def guarded(request: web.Request) -> web.StreamResponse:
            login = self._login_of(request)
            if login is None:
                if page:
                    raise web.HTTPSeeOther("/login")
                return web.json_response({"error": "login needed"}, status=401)
            if post:
                origin = request.headers.get("Origin")
                if origin is not None and origin != f"{request.scheme}://{request.host}":
                    return self._forbidden(request, login, f"request from another origin ({origin})")
                if not csrf_ok(login, request.headers.get("X-CSRF-Token")):
                    return self._forbidden(request, login, "CSRF token missing or wrong: reload the page")
            return await handler(request, login)
        return guarded

    def _forbidden(self, request: web.Request, login: Login, reason: str) -> web.Response:
        self.controls_refused += 1
        log.warning("refused %s %s for %s: %s", request.method, escape(request.path), login.user, reason)
        return web.json_response({"error": reason}, status=403)

    # --- login ------------------------------------------------------------------------------------

    async def login_page(self, request: web.Request) -> web.StreamResponse:
        if self._login_of(request) is not None:
            raise web.HTTPSeeOther("/")
        return self._render("login.html", error="")

    async def login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        user, password = str(form.get("user", ""))[:64], str(form.get("password", ""))[:256]
        address = request.remote or "?"
        keys_ = (f"addr:{address}", f"user:{user}")
        wait_s = self.throttle.wait_s(*keys_)
        if wait_s > 0:
            self.throttle.refused += 1
            log.warning("login refused for %r from %s: locked for %.0f s more after failed logins",
                        escape(user), address, wait_s)
            return self._render("login.html", status=429, headers={"Retry-After": str(int(wait_s) + 1)},
                                error=f"Too many failed logins: try again in {int(wait_s) + 1} s.")
        # One thread for every password check: scrypt takes 16 MB and ~50 ms a check; in the loop's
        # default pool each worker thread would keep its own 16 MB, and a flood of guesses would
        # take every core (one at a time, it takes one).
        if self._logins_waiting >= MAX_LOGINS_WAITING:
            self.throttle.refused += 1
            return self._render("login.html", status=429, headers={"Retry-After": "1"},
                                error="The console is busy with other logins: try again in a second.")
        self._logins_waiting += 1
        try:
            role = await asyncio.get_running_loop().run_in_executor(self._password_checks, self.users.check, user,
                                                                    password)
        finally:
            self._logins_waiting -= 1
        if role is None:
            self.throttle.failure(*keys_)
            log.warning("failed login for %r from %s", escape(user), address)
            return self._render("login.html", status=401, error="Wrong user or password.")
        self.throttle.success(*keys_)
        login = self.sessions.open(user, role)
        log.info("login: %s (%s) from %s", user, role, address)
        response = web.HTTPSeeOther("/")
        response.set_cookie(COOKIE, login.token, httponly=True, samesite="Strict", path="/",
                            max_age=int(self.cfg.session_max_s))
        raise response

    async def logout(self, request: web.Request, login: Login) -> web.StreamResponse:
        self.sessions.close(login.token)
        log.info("logout: %s", login.user)
        response = web.HTTPSeeOther("/login")
        response.del_cookie(COOKIE, path="/")
        raise response

    def _render(self, template: str, status: int = 200, headers: dict[str, str] | None = None,
                **context: Any) -> web.Response:
        return web.Response(text=self.templates.get_template(template).render(**context), status=status,
                            content_type="text/html", headers=headers)

    # --- the page and its data -----------------------------------------------------------------------

    async def index(self, request: web.Request, login: Login) -> web.StreamResponse:
        return self._render("console.html", user=login.user, role=login.role, csrf=login.csrf)

    def _snapshot(self, login: Login) -> dict[str, Any]:
        return self.view.snapshot() | {"user": login.user, "role": login.role, "console": self.counters()}

    def counters(self) -> dict[str, int]:
        """The console's own refusals and load, for the page and the tests."""
        return {"pages_open": len(self.hub), "streams_cut": self.hub.cut, "logins_failed": self.throttle.failed,
                "logins_refused": self.throttle.refused, "controls_sent": self.controls_sent,
                "controls_refused": self.controls_refused, "symbols_refused": self.view.symbols_refused}

    async def snapshot(self, request: web.Request, login: Login) -> web.StreamResponse:
        return web.json_response(self._snapshot(login))

    async def stream(self, request: web.Request, login: Login) -> web.StreamResponse:
        """Server-sent events: ``snapshot`` at once and every second, ``state`` and ``event`` the
        moment the console hears them. Ends when the login expires (the page then logs in again)."""
        queue = self.hub.open()
        if queue is None:
            log.warning("live stream refused for %s: %d pages open already", login.user, MAX_STREAMS)
            return web.json_response({"error": f"{MAX_STREAMS} pages are open already; close one"}, status=503)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                               "X-Accel-Buffering": "no"})
        await response.prepare(request)
        try:
            await _send(response, "snapshot", self._snapshot(login))
            next_snapshot = time.monotonic() + SNAPSHOT_EVERY_S
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), max(0.0, next_snapshot - time.monotonic()))
                except TimeoutError:
                    if self._live(self.sessions.get(login.token)) is None:
                        break
                    await _send(response, "snapshot", self._snapshot(login))
                    next_snapshot = time.monotonic() + SNAPSHOT_EVERY_S
                    continue
                if item is None:
                    break
                await _send(response, *item)
        except ConnectionResetError:
            pass  # the page went away; a cancellation (the server stopping) goes on up
        finally:
            self.hub.close(queue)
        return response

    async def prices(self, request: web.Request, login: Login) -> web.StreamResponse:
        try:
            symbol = request.query["symbol"][:64]
            now = time.time()
            start = float(request.query.get("start", now - 300))
            end = float(request.query.get("end", now))
        except (KeyError, ValueError):
            return web.json_response({"error": "symbol=S&start=ts&end=ts"}, status=400)
        if end < start or end - start > 6 * 3600:
            return web.json_response({"error": "a window of at most 6 hours, start before end"}, status=400)
        return web.json_response(self.view.prices(symbol, start, end))

    async def report_list(self, request: web.Request, login: Login) -> web.StreamResponse:
        return web.json_response({"reports": await asyncio.to_thread(self.reports.list)})

    async def report(self, request: web.Request, login: Login) -> web.StreamResponse:
        found = await asyncio.to_thread(self.reports.get, request.match_info["name"])
        if found is None:
            return web.json_response({"error": "no such report"}, status=404)
        return web.json_response(found)

    async def logs(self, request: web.Request, login: Login) -> web.StreamResponse:
        q = request.query
        try:
            limit = int(q.get("limit", 200))
        except ValueError:
            return web.json_response({"error": "limit is a number"}, status=400)
        return web.json_response(await asyncio.to_thread(
            session_log.tail, self.settings.paths.log_dir, level=q.get("level", ""), log=q.get("log", ""),
            text=q.get("q", "")[:200], limit=limit))

    # --- controls ---------------------------------------------------------------------------------

    async def control(self, request: web.Request, login: Login) -> web.StreamResponse:
        name = request.match_info["name"]
        if login.role != "operator":
            return self._forbidden(request, login, f"{login.user} is a read-only user ({login.role}): "
                                                   f"no control may be pressed")
        try:
            body = await request.json()
            reason = body.get("reason", "") if isinstance(body, dict) else None
            if not isinstance(reason, str):
                raise ValueError("reason must be text")
        except ValueError as exc:
            return web.json_response({"error": f"bad request: {exc}"}, status=400)
        try:
            outcome = await asyncio.to_thread(
                controls.send, self.ctx, self.settings.bus, self.settings.paths.run_dir, self.settings.paths.keys,
                login.user, name, reason, self.cfg.control_timeout_s)
        except controls.ControlRefused as exc:
            return web.json_response({"error": str(exc)}, status=400)
        self.controls_sent += 1
        log.info("control %s pressed by %s (reason %s): %s", name, login.user, escape(reason or "-"),
                 "done, session is " + str(outcome.get("state")) if outcome["ok"] else
                 "refused: " + escape(outcome["error"]))
        return web.json_response(outcome)


async def _send(response: web.StreamResponse, kind: str, data: Any) -> None:
    await response.write(f"event: {kind}\ndata: {json.dumps(data, default=str)}\n\n".encode())
