"""Segment content features: the feature store, its writer, SegMM import, synthetic data.

Importing this package never imports torch (the service reads stores through it); the
extractor (`segint.features.extract`, `segint.features.encoder`) needs the ``features`` extra.
"""

from segint.features.store import FeatureStore, l1_normalize
from segint.features.writer import FeatureWriter

__all__ = ["FeatureStore", "FeatureWriter", "l1_normalize"]
