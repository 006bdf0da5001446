"""Moving messages: sockets, publisher/subscriber, command server/client, heartbeats, the loop.

Nothing here knows what a message means; ``proto`` turns messages into bytes and back.
"""

from bus.command_channel import CommandChannel, NotConnected
from bus.command_client import CommandClient, CommandRefused, CommandTimeout
from bus.command_server import CommandServer
from bus.curve import Curve, NoCurve, Security, security
from bus.endpoints import SERVICE_NAMES, Endpoints, ensure_private_dir
from bus.heartbeat import Heartbeater
from bus.keys import KeyStore, MissingKey
from bus.publisher import Publisher
from bus.reactor import Reactor
from bus.settings import BusSettings
from bus.sockets import make_socket
from bus.subscriber import PeerTrack, Subscriber
from bus.subscription_guard import SubscriptionGuard

__all__ = [
    "BusSettings", "CommandChannel", "CommandClient", "CommandRefused", "CommandServer", "CommandTimeout", "Curve",
    "Endpoints", "Heartbeater", "KeyStore", "MissingKey", "NoCurve", "NotConnected", "PeerTrack", "Publisher",
    "Reactor", "SERVICE_NAMES", "Security", "Subscriber", "SubscriptionGuard", "ensure_private_dir", "make_socket",
    "security",
]
