"""The orchestrator's control API: one handler per command, as ``tradectl`` sends them.

Each handler's docstring shows the wire request, the CLI usage and the reply. A refusal is an
``error(reason)`` reply (``tradectl`` exits 1); success is ``ok(...)`` (exit 0). A command whose
work waits on a peer (``close``, ``recover``, ``flatten``, ``shutdown``'s report) returns the
future of its reply: the command server answers when the sequence has run
(``sequence_runner.py``), and the loop serves meanwhile.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import proto
from bus.command_server import Handler
from proto.commands import Failsafe, NoArgs, ReasonArgs, SymbolArgs
from services.orchestrator.session_control import SessionControl
from services.orchestrator.session_state import Refused
from services.orchestrator.snapshots import Snapshots
from services.orchestrator.state_machine import IllegalTransition

Reply = dict[str, Any]


def build_handlers(control: SessionControl, snapshots: Snapshots,
                   caller: Callable[[], str] = lambda: "") -> dict[str, Handler]:
    """``caller()``: who sent the command being handled (its authenticated identity)."""
    session = control.session

    def record(name: str, accepted: bool, detail: str, by: str) -> None:
        """Every operator command, accepted or refused, goes to the governance log with who sent it."""
        session.logs.governance(f"Operator command {name} by {by or '?'}: {'accepted' if accepted else 'REFUSED'}: "
                                f"{detail}", logging.INFO if accepted else logging.WARNING, event="operator_command",
                                data={"command": name, "accepted": accepted, "detail": detail, "caller": by})

    def refused(name: str, exc: Exception, by: str) -> proto.CommandError:
        record(name, False, str(exc), by)
        return proto.CommandError(str(exc))

    def accepted(name: str, reason: str, result: Reply | None, by: str) -> Reply:
        record(name, True, f"{reason}; session is {session.state.value}", by)
        return {"state": session.state.value, **(result or {})}

    def refusing(name: str, reason: str, action: Callable[[], Reply | Future[Reply] | None]) -> Reply | Future[Reply]:
        """Run a control action (now, or as a sequence: its future); record it, accepted or
        refused, in the governance log."""
        by = caller()  # read now: a sequence's answer comes after the command server has moved on
        try:
            done = action()
        except (Refused, IllegalTransition) as exc:
            raise refused(name, exc, by) from None
        if not isinstance(done, Future):
            return accepted(name, reason, done, by)
        reply: Future[Reply] = Future()

        def answer(done: Future[Reply]) -> None:
            try:
                reply.set_result(accepted(name, reason, done.result(), by))
            except (Refused, IllegalTransition) as exc:
                reply.set_exception(refused(name, exc, by))
            except Exception as exc:  # a bug: the command server answers it as an internal error
                reply.set_exception(exc)

        done.add_done_callback(answer)
        return reply

    def state(_: NoArgs) -> dict[str, Any]:
        """``state``: the session state's lower-case name.

        Wire: ``Command(name="state")`` → ``ok(state="live", session_id)``.  CLI: ``tradectl state``.
        A restarted trading process learns the session from it (its counters are per session).
        """
        return {"state": session.state.value, "session_id": session.session_id}

    def status(_: NoArgs) -> dict[str, Any]:
        """``status``: the state and every component's liveness.

        Wire: ``Command(name="status")`` → ``ok(state, session_id, components={name: {alive, pid,
        heartbeat_age_s, restarts, trading_enabled, stats}}, session_logs)``.
        CLI: ``tradectl status [--json]``.
        """
        return snapshots.status()

    def stats(_: NoArgs) -> dict[str, Any]:
        """``stats``: session counters (``session_duration``, ``failsafe_activations``, ...).

        Wire: ``Command(name="stats")`` → ``ok(**stats)``.  CLI: ``tradectl stats [--json]``.
        """
        return snapshots.stats()

    def open_(args: ReasonArgs) -> dict[str, Any]:
        """``open``: the market-open signal, READY → LIVE.

        Wire: ``Command(name="open", args={"reason": str})``.  CLI: ``tradectl open``.
        """
        return refusing("open", args.reason, lambda: control.open_market(args.reason))

    def close(args: ReasonArgs) -> Reply | Future[Reply]:
        """``close``: market close: flatten (``orchestrator.close_flatten``; always in FAILSAFE),
        end the session (→ SHUTDOWN), write the end-of-day report and archive the session's logs.
        A FAILSAFE sequence still retrying finishes its round and stops. Answered once the report
        is written (the flatten waits up to ``close_flatten_timeout_s`` for flat).

        Wire: ``Command(name="close", args={"reason": str})`` → ``ok(state, report, report_md, archive)``.
        CLI: ``tradectl close``.
        """
        return refusing("close", args.reason, lambda: control.close_market(args.reason))

    def recover(_: NoArgs) -> Reply | Future[Reply]:
        """``recover``: DEGRADED → LIVE when every process is healthy; refused with the reason otherwise.
        Answered once the safety process has reset and the session is LIVE.

        Wire: ``Command(name="recover")``.  CLI: ``tradectl recover``.
        """
        return refusing("recover", "operator recover", control.recover)

    def failsafe(args: Failsafe) -> dict[str, Any]:
        """``failsafe``: stop trading now (LIVE/DEGRADED → FAILSAFE) and run the failsafe sequence.
        In FAILSAFE: a round of the sequence now (the venue not flat yet, or holding something again).

        Wire: ``Command(name="failsafe", args={"reason": str})``.
        CLI: ``tradectl failsafe --reason TEXT``.
        """
        return refusing("failsafe", args.reason, lambda: control.trigger_failsafe(args.reason))

    def reset(args: ReasonArgs) -> dict[str, Any]:
        """``reset``: FAILSAFE → READY once the failsafe sequence has finished and the venue holds
        no position and no open order (refused with what it holds otherwise); then ``open`` again.

        Wire: ``Command(name="reset", args={"reason": str})``.  CLI: ``tradectl reset``.
        """
        return refusing("reset", args.reason, lambda: control.reset(args.reason))

    def shutdown(args: ReasonArgs) -> Reply | Future[Reply]:
        """``shutdown``: end the session (→ SHUTDOWN); trading stops everywhere. The processes stay
        up; the next orchestrator start begins a new session. Never refused for a FAILSAFE sequence
        under way: its current round finishes, no other follows, and the reason says what is left.
        Answered once the end-of-day report is written.

        Wire: ``Command(name="shutdown", args={"reason": str})`` → ``ok(state, report, report_md,
        archive)``.  CLI: ``tradectl shutdown``.
        """
        return refusing("shutdown", args.reason, lambda: control.shutdown(args.reason))

    def flatten(args: SymbolArgs) -> Reply | Future[Reply]:
        """``flatten``: in FAILSAFE, a round of the failsafe sequence now (stop new orders, cancel,
        flatten, verify flat); otherwise the exchange manager cancels and flattens (all symbols, or
        ``symbol``) while the strategies keep running.

        Wire: ``Command(name="flatten", args={"symbol": str | None})`` → ``ok(state, failsafe_round=True)``
        in FAILSAFE, else ``ok(state, orders=[client order ids sent])``.
        CLI: ``tradectl flatten [--symbol S]``.
        """
        return refusing("flatten", f"flatten {args.symbol or 'every symbol'}", lambda: control.flatten(args.symbol))

    return {
        "flatten": flatten,
        "state": state, "status": status, "stats": stats, "open": open_, "close": close,
        "recover": recover, "failsafe": failsafe, "reset": reset, "shutdown": shutdown,
    }
