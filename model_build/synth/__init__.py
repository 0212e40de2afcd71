"""Synthetic machine sounds in the DCASE layout: the shared core and one module per
generator family."""
