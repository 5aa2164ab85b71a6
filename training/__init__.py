"""Training of the segment interest model: configs, data, the loop, checkpoints, batched
inference for validation and evaluation, side features, and experiment scripts."""
