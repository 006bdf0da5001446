"""``tradectl bus``: the operators' passive bus sniffer (see ``commands.py`` for the verbs)."""
