"""CrossGuard policy pack for drydock. The rules are in `rules.py`, importable on their own."""
