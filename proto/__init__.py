"""The wire contract: every message, its envelope, and the one encoder/decoder (see envelope.py)."""

from proto import limits, topics
from proto import commands, summaries
from proto.commands import (ARG_SCHEMAS, QUERIES, Args, CommandError, CommandSpec, args_of, check_result, error, ok, parse_args,
                            read_result, spec_of)
from proto.envelope import (
    MAX_MESSAGE_BYTES,
    SCHEMA_VERSION,
    Envelope,
    Header,
    decode,
    decode_header,
    decode_reply,
    encode,
    from_builtins,
    restamp,
    to_builtins,
)
from proto.errors import ProtocolError
from proto.instruments import Instrument, InstrumentBook, InstrumentList
from proto.messages import (
    MESSAGE_TYPES,
    BadMarketData,
    SessionTime,
    Command,
    CommandAudit,
    ConnectorHealthEvent,
    EngineHealthEvent,
    Fill,
    GovernanceEvent,
    Heartbeat,
    Message,
    OrderUpdate,
    ProcessAlert,
    ProcessHealthEvent,
    Quote,
    Reply,
    TypedReply,
    SafetyEvent,
    StateChanged,
    Trade,
)
from proto.session import OrchestratorState, OrderStatus, SafetyEventType, Severity, Side
from proto.venue_reports import (
    FillPage,
    MassStatus,
    OrderIdPage,
    OrderStatusReport,
    OrderStatusReports,
    PositionReport,
    parse_result,
    result_of,
)

__all__ = [
    "ARG_SCHEMAS", "QUERIES", "CommandSpec", "args_of", "check_result", "commands", "summaries", "read_result", "spec_of", "FillPage", "MassStatus", "OrderIdPage", "OrderStatusReport", "OrderStatusReports",
    "PositionReport", "parse_result", "result_of", "Args", "BadMarketData", "SessionTime", "Command", "CommandAudit", "CommandError", "ConnectorHealthEvent",
    "EngineHealthEvent", "Envelope", "Fill", "GovernanceEvent", "Header", "Heartbeat", "Instrument", "InstrumentBook", "InstrumentList", "MAX_MESSAGE_BYTES",
    "MESSAGE_TYPES", "Message", "OrchestratorState", "OrderStatus", "OrderUpdate", "ProcessAlert", "ProcessHealthEvent",
    "ProtocolError", "Quote", "Reply", "SCHEMA_VERSION", "TypedReply", "SafetyEvent", "SafetyEventType", "Severity",
    "Side", "StateChanged", "Trade", "decode", "decode_header", "decode_reply", "encode", "error", "from_builtins", "ok", "parse_args", "restamp",
    "limits", "to_builtins", "topics",
]
