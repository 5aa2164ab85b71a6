"""segint: segment-level user interest for short-video recommendation.

This package is two layers (docs/architecture.md, tests/test_layers.py): the core library
(data, splits, source, provenance, metrics, heads, watch time, features, ...: layer 0, imports
no other project package) and, in `segint.cli` and `segint.commands`, the command line on top
(layer 3, imports everything). The core never imports the CLI.
"""

__version__ = "0.1.0"
