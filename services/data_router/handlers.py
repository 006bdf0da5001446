"""The data router's commands (besides ``status``, which every service answers); requests and
results in ``proto/commands/registry.py`` and docs/protocol.md."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import proto
from bus.command_server import Handler
from proto.commands import SymbolsArgs

if TYPE_CHECKING:
    from services.data_router.main import DataRouter


def build_handlers(router: "DataRouter") -> dict[str, Handler]:
    def subscribe(args: SymbolsArgs) -> dict[str, Any]:
        """``subscribe``: route these symbols too; refused if the symbols routed by name would pass
        ``data_router.max_symbols``."""
        new = set(args.symbols) - router.feed.symbols
        if len(router.feed.symbols) + len(new) > router.max_symbols:
            raise proto.CommandError(f"routing {len(router.feed.symbols)} symbols by name; {len(new)} more would pass "
                                     f"data_router.max_symbols={router.max_symbols}")
        router.feed.subscribe(args.symbols)
        return {"subscribed": args.symbols}

    def unsubscribe(args: SymbolsArgs) -> dict[str, Any]:
        """``unsubscribe``: stop routing these symbols."""
        router.feed.unsubscribe(args.symbols)
        return {"unsubscribed": args.symbols}

    return {"subscribe": subscribe, "unsubscribe": unsubscribe}
