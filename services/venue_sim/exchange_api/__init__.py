"""The venue simulator's exchange API: the same matching engine behind a real exchange's public API
(Binance spot's REST subset that ccxt's ``binance`` class calls), so a ccxt adapter is tested end to
end against it, unmodified but for its URLs. ``binance.py`` answers the calls, ``server.py`` serves
them over HTTP with Binance's signing, rate limit and errors."""
