"""DCASE metrics and reports: backend scores, AUC/pAUC per section and domain, the
classical baseline, the GMM backend, plots."""
