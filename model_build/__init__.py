"""Training side: synthetic data, the dual-branch network, evaluation and export.

Imports frontend, backend and bundle format from `edge_agent`, so each exists once.
"""

__version__ = "0.1.0"
