"""The wire contract: every message, its envelope, and the one encoder/decoder (see envelope.py)."""

from proto.commands import ARG_SCHEMAS, Args, CommandError, error, ok, parse_args
from proto.envelope import MAX_MESSAGE_BYTES, SCHEMA_VERSION, Envelope, decode, encode, to_builtins
from proto.errors import ProtocolError
from proto.messages import (
    MESSAGE_TYPES,
    Command,
    ConnectorHealthEvent,
    EngineHealthEvent,
    Heartbeat,
    Message,
    ProcessHealthEvent,
    Reply,
    SafetyEvent,
    StateChanged,
)
from proto.session import OrchestratorState, SafetyEventType, Severity
from proto import topics

__all__ = [
    "ARG_SCHEMAS", "Args", "Command", "CommandError", "ConnectorHealthEvent", "EngineHealthEvent",
    "Envelope", "Heartbeat", "MAX_MESSAGE_BYTES", "MESSAGE_TYPES", "Message", "OrchestratorState",
    "ProcessHealthEvent", "ProtocolError", "Reply", "SCHEMA_VERSION", "SafetyEvent", "SafetyEventType",
    "Severity", "StateChanged", "decode", "encode", "error", "ok", "parse_args", "to_builtins", "topics",
]
