"""The orchestrator's control API: one handler per command, as ``tradectl`` sends them.

Each handler's docstring shows the wire request, the CLI usage and the reply. A refusal is an
``error(reason)`` reply (``tradectl`` exits 1); success is ``ok(...)`` (exit 0).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import proto
from bus.command_server import Handler
from proto.commands import Failsafe, NoArgs, ReasonArgs, SymbolArgs
from services.orchestrator.state_machine import IllegalTransition

if TYPE_CHECKING:
    from services.orchestrator.orchestrator import LiveTradingOrchestrator


def build_handlers(orch: "LiveTradingOrchestrator") -> dict[str, Handler]:
    from services.orchestrator.orchestrator import Refused

    def refusing(name: str, reason: str, action: Any) -> dict[str, Any]:
        """Run a control action; record it (accepted or refused) in the governance log."""
        try:
            action()
        except (Refused, IllegalTransition) as exc:
            orch.record_command(name, False, str(exc))
            raise proto.CommandError(str(exc)) from None
        orch.record_command(name, True, f"{reason}; session is {orch.get_state().value}")
        return {"state": orch.get_state().value}

    def state(_: NoArgs) -> dict[str, Any]:
        """``state``: the session state's lower-case name.

        Wire: ``Command(name="state")`` → ``ok(state="live", session_id)``.  CLI: ``tradectl state``.
        A restarted trading process learns the session from it (its counters are per session).
        """
        return {"state": orch.get_state().value, "session_id": orch.session_id}

    def status(_: NoArgs) -> dict[str, Any]:
        """``status``: the state and every component's liveness.

        Wire: ``Command(name="status")`` → ``ok(state, session_id, components={name: {alive, pid,
        heartbeat_age_s, restarts, trading_enabled, stats}}, session_logs)``.
        CLI: ``tradectl status [--json]``.
        """
        return orch.get_status()

    def stats(_: NoArgs) -> dict[str, Any]:
        """``stats``: session counters (``session_duration``, ``failsafe_activations``, ...).

        Wire: ``Command(name="stats")`` → ``ok(**stats)``.  CLI: ``tradectl stats [--json]``.
        """
        return orch.get_stats()

    def open_(args: ReasonArgs) -> dict[str, Any]:
        """``open``: the market-open signal, READY → LIVE.

        Wire: ``Command(name="open", args={"reason": str})``.  CLI: ``tradectl open``.
        """
        return refusing("open", args.reason, lambda: orch.open_market(args.reason))

    def close(args: ReasonArgs) -> dict[str, Any]:
        """``close``: market close: flatten (``orchestrator.close_flatten``; always in FAILSAFE),
        end the session (→ SHUTDOWN), write the end-of-day report and archive the session's logs.
        A FAILSAFE sequence still retrying finishes its round and stops.

        Wire: ``Command(name="close", args={"reason": str})`` → ``ok(state, report, report_md, archive)``.
        CLI: ``tradectl close``.
        """
        written: dict[str, Any] = {}
        result = refusing("close", args.reason, lambda: written.update(orch.close_market(args.reason)))
        return {**result, **written}

    def recover(_: NoArgs) -> dict[str, Any]:
        """``recover``: DEGRADED → LIVE when every process is healthy; refused with the reason otherwise.

        Wire: ``Command(name="recover")``.  CLI: ``tradectl recover``.
        """
        return refusing("recover", "operator recover", orch.recover)

    def failsafe(args: Failsafe) -> dict[str, Any]:
        """``failsafe``: stop trading now (LIVE/DEGRADED → FAILSAFE) and run the failsafe sequence.
        In FAILSAFE: a round of the sequence now (the venue not flat yet, or holding something again).

        Wire: ``Command(name="failsafe", args={"reason": str})``.
        CLI: ``tradectl failsafe --reason TEXT``.
        """
        return refusing("failsafe", args.reason, lambda: orch.trigger_failsafe(args.reason))

    def reset(args: ReasonArgs) -> dict[str, Any]:
        """``reset``: FAILSAFE → READY once the failsafe sequence has finished and the venue holds
        no position and no open order (refused with what it holds otherwise); then ``open`` again.

        Wire: ``Command(name="reset", args={"reason": str})``.  CLI: ``tradectl reset``.
        """
        return refusing("reset", args.reason, lambda: orch.reset(args.reason))

    def shutdown(args: ReasonArgs) -> dict[str, Any]:
        """``shutdown``: end the session (→ SHUTDOWN); trading stops everywhere. The processes stay
        up; the next orchestrator start begins a new session. Never refused for a FAILSAFE sequence
        under way: its current round finishes, no other follows, and the reason says what is left.

        Wire: ``Command(name="shutdown", args={"reason": str})``.  CLI: ``tradectl shutdown``.
        """
        return refusing("shutdown", args.reason, lambda: orch.shutdown(args.reason))

    def flatten(args: SymbolArgs) -> dict[str, Any]:
        """``flatten``: in FAILSAFE, a round of the failsafe sequence now (stop new orders, cancel,
        flatten, verify flat); otherwise the exchange manager cancels and flattens (all symbols, or
        ``symbol``) while the strategies keep running.

        Wire: ``Command(name="flatten", args={"symbol": str | None})`` → ``ok(state, failsafe_round=True)``
        in FAILSAFE, else ``ok(state, orders=[client order ids sent])``.
        CLI: ``tradectl flatten [--symbol S]``.
        """
        done: dict[str, Any] = {}
        result = refusing("flatten", f"flatten {args.symbol or 'every symbol'}",
                          lambda: done.update(orch.flatten(args.symbol)))
        return {**result, **done}

    return {
        "flatten": flatten,
        "state": state, "status": status, "stats": stats, "open": open_, "close": close,
        "recover": recover, "failsafe": failsafe, "reset": reset, "shutdown": shutdown,
    }
