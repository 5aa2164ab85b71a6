"""Optional content-feature hook: builds the content feeds of an artifact from a feature store.

A model trained with the content modality takes ``hist_content`` (B, H, Dc) and
``video_content`` (C, S, Dc) (docs/contracts.md). The service gets them from a segment feature
store (`segint.features.FeatureStore`, pure numpy, no torch) named by ``SEGINT_FEATURE_STORE``
(the ``feature_store`` setting); without one, content artifacts cannot be served. Videos
missing from the store get zero features (as in training, `training.data`) and are counted in
``segint_content_missing_total{input=candidate|history}``, so the operator sees coverage.

The features are built with the same `FeatureStore` calls as training's batches
(``video_matrix`` for the target video, ``history_means`` over each view's watched segments).

Notation: ``C`` candidates, ``H`` history columns, ``S`` slots, ``Dc`` content width.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from segint.errors import SegintError
from segint.features import FeatureStore
from service import metrics

log = logging.getLogger(__name__)

ENV_STORE = "SEGINT_FEATURE_STORE"  # path of the store; unset = no content features
ENV_L1 = "SEGINT_FEATURE_L1"  # "1": L1-normalise vectors on read (SegMM-trained models)

F32Array = npt.NDArray[np.float32]


@dataclass
class ContentFeatures:
    """Content feeds for one artifact, read from one feature store snapshot."""

    store: FeatureStore
    s_max: int
    missing_videos: int = 0  # candidate or history videos absent from the store, so far

    @classmethod
    def open(
        cls, path: str | Path, model_config: dict[str, Any], l1_normalize: bool = False
    ) -> ContentFeatures:
        """Open ``path`` for an artifact whose model config is ``model_config``.

        Raises:
            SegintError: the store is unreadable or its width differs from ``content_dim``.
        """
        store = FeatureStore.open(path, l1_normalize=l1_normalize)
        want = int(model_config.get("content_dim", 0))
        if store.dim != want:
            raise SegintError(f"feature store {path} has dim {store.dim}, the model wants {want}")
        log.info("content features: %s (%d videos, dim %d)", path, len(store), store.dim)
        return cls(store=store, s_max=int(model_config["s_max"]))

    @classmethod
    def from_env(cls, model_config: dict[str, Any]) -> ContentFeatures | None:
        """The store named by ``SEGINT_FEATURE_STORE``, or None when the variable is unset."""
        path = os.environ.get(ENV_STORE)
        if not path:
            return None
        return cls.open(path, model_config, l1_normalize=os.environ.get(ENV_L1) == "1")

    @property
    def identity(self) -> bytes:
        """8 bytes naming this snapshot of the store and how it is read: user states computed
        from other features (another commit, or L1 on/off) must not be served from the cache."""
        state = json.dumps([self.store.meta, self.store.l1_normalize], sort_keys=True, default=str)
        return hashlib.sha256(state.encode()).digest()[:8]

    def video_content(self, video_ids: npt.ArrayLike, n_segments: npt.ArrayLike) -> F32Array:
        """Feed ``video_content`` (C, S, Dc) of the candidates."""
        feats, mask = self.store.video_matrix(video_ids, n_segments, self.s_max)
        missing = int((~mask.any(axis=1)).sum())
        self.missing_videos += missing
        metrics.CONTENT_MISSING.labels("candidate").inc(missing)
        return feats

    def hist_content(
        self,
        hist_video_ids: npt.ArrayLike,
        hist_exit_slots: npt.ArrayLike,
        hist_n_segments: npt.ArrayLike,
        hist_mask: npt.ArrayLike,
    ) -> F32Array:
        """Feed ``hist_content`` (B, H, Dc): mean features of each history view's watched
        segments (zeros for padding and for videos missing from the store)."""
        means, found = self.store.history_means(
            hist_video_ids, hist_exit_slots, hist_n_segments, hist_mask
        )
        missing = int((np.asarray(hist_mask, dtype=bool) & ~found).sum())
        self.missing_videos += missing
        metrics.CONTENT_MISSING.labels("history").inc(missing)
        return means
