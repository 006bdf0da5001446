"""``tradectl safety``: what the safety layer holds now, and its detectors over a recorded file."""
