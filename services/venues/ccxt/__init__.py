"""A venue reached through ccxt (``kind = "ccxt"``): any exchange of ccxt's that offers the unified
calls used here. ``session.py`` runs ccxt's async exchange on its own thread; ``execution.py`` is
the exchange manager's connector, ``data.py`` the data router's feed; ``translate.py`` turns ccxt's
unified structures into ``proto`` messages and reports, and ccxt's exceptions into our reasons."""
