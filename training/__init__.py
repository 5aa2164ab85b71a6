"""Training of the segment interest model: configs, data, the loop, checkpoints."""
