"""The simulated venue's instrument specifications: one per symbol it trades, served by its
``instruments`` command and enforced by its matching, as a real venue's are.

A symbol with an entry in ``venue_sim.instruments`` uses it; any other symbol it trades (a synthetic
symbol added in the settings, a replayed file's) gets one derived from its first price: a tick of
about six significant digits, a lot worth 0.1 to 1 quote unit, one lot minimum, a notional of at
least 1.
"""

from __future__ import annotations

import math

from proto.instruments import Instrument
from services.venue_sim.settings import InstrumentSettings, VenueSimSettings


def derived(price: float) -> InstrumentSettings:
    """A plausible specification for a market trading near ``price``."""
    magnitude = math.floor(math.log10(price))
    return InstrumentSettings(tick_size=10.0 ** (magnitude - 6), lot_size=10.0 ** (-magnitude - 1))


def venue_instruments(settings: VenueSimSettings, reference_prices: dict[str, float]) -> dict[str, Instrument]:
    """{symbol: Instrument} for every symbol the venue trades (``reference_prices``: each one's first price)."""
    out = {}
    for symbol, price in reference_prices.items():
        spec = settings.instruments.get(symbol) or derived(price if math.isfinite(price) and price > 0 else 1.0)
        base, _, quote = symbol.partition("-")
        out[symbol] = Instrument(symbol=symbol, tick_size=spec.tick_size, lot_size=spec.lot_size,
                                 min_qty=spec.min_qty or spec.lot_size, max_qty=spec.max_qty,
                                 min_notional=spec.min_notional, base=base if quote else "", quote=quote)
    return out
