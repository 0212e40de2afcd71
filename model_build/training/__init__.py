"""The two-branch network, its losses, the TensorFlow frontend, the training loop and
the run folders it writes."""
