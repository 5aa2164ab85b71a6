"""segint: segment-level user interest for short-video recommendation."""

__version__ = "0.1.0"
