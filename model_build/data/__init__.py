"""The DCASE data layout: clips, their attributes and the evaluation ground truth."""
