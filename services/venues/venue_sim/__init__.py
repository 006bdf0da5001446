"""The venue simulator's native adapter (its own ``proto`` wire): ``data.py`` and ``execution.py``."""
