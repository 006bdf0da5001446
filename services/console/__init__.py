"""The operators' web console: the session at a glance, the bad minute replayed, controls behind a
login (docs/console.md). Its own process, so the trading processes never serve web pages."""
