"""Zero-downtime model swap: follow the ``artifact_dir`` symlink to a new artifact.

Deploy a new model by pointing the symlink elsewhere, atomically::

    ln -sfn v2 artifacts/current.tmp && mv -T artifacts/current.tmp artifacts/current

with the service started on ``SEGINT_ARTIFACT_DIR=artifacts/current``. Every
``SEGINT_MODEL_WATCH_S`` seconds the service resolves the link; when it points to another
folder, it loads that artifact beside the serving one (in a worker thread: requests keep being
answered), warms it (one user-encoder and one scorer run through the inference slots) and then
swaps the ranker, the cache namespace and the user states in one step of the event loop. A
request holds the user states it started with, so it is scored by one model from start to end
and its ``model_version`` names that model. User blobs of the new version are computed on
first sight (their keys carry the version). Pending outage events, the inference slots and the
journal carry over.

A target that fails to load or warm is refused: logged, counted in
``segint_model_swaps_total{result="refused"}``, and the old model keeps serving. It is not
retried until the link changes again. An artifact with another ``s_max`` is refused too: the
request limits (longest video) are part of the published schema, which a restart renews.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import os
from pathlib import Path

import anyio.to_thread

from segint.errors import SegintError
from service import metrics
from service.cache import namespace
from service.deps import AppState
from service.history import History
from service.ranker import Ranker, Timings
from service.settings import Settings
from service.users import UserStates

log = logging.getLogger(__name__)


def load_ranker(artifact: Path, settings: Settings) -> Ranker:
    """The artifact's `Ranker` as the settings configure it: at start and on every swap."""
    ranker = Ranker.load(
        artifact,
        provider=settings.provider,
        intra_op_threads=settings.intra_op_threads,
        spinning=settings.ort_spinning,
        feature_store=settings.feature_store,
        feature_l1=settings.feature_l1,
        precision=settings.scorer_precision,
        kernel=settings.scorer_kernel,
        kernel_library=settings.kernel_library,
    )
    ranker.ragged_enabled = settings.ragged_scoring
    return ranker


class ModelSwapper:
    """Watches ``settings.artifact_dir`` and swaps ``state``'s model when it moves."""

    def __init__(self, state: AppState, settings: Settings, loaded_from: Path) -> None:
        self.state = state
        self.settings = settings
        self.current = loaded_from  # the folder serving now
        self.refused: Path | None = None  # the last target refused (not retried)
        self._busy = asyncio.Lock()

    async def watch_forever(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            target = Path(os.path.realpath(self.settings.artifact_dir))
            if target not in (self.current, self.refused):
                await self.swap_to(target)

    async def swap_to(self, target: Path) -> bool:
        """Load, warm and swap in the artifact at ``target``; False (old kept) on failure."""
        async with self._busy:
            old = self.state.ranker
            log.info("artifact_dir now points to %s: loading it beside %s", target, self.current)
            try:
                ranker = await anyio.to_thread.run_sync(self._load, target)
                if ranker.manifest.s_max != old.manifest.s_max:
                    raise SegintError(
                        f"s_max {ranker.manifest.s_max} differs from the serving model's "
                        f"{old.manifest.s_max} (the request limits); restart to change it"
                    )
                cache = copy.copy(self.state.cache)
                cache.namespace = namespace(self.settings.key_prefix, ranker.manifest.model_version)
                users = self.state.users.for_model(ranker, cache)
                await self._warm(users)
            except Exception as e:  # any failure of a candidate model must leave the old one
                metrics.MODEL_SWAPS.labels("refused").inc()
                self.refused = target
                log.error(
                    "refused artifact %s (%s: %s); still serving %s",
                    target,
                    type(e).__name__,
                    e,
                    old.manifest.model_version,
                )
                return False
            # One step of the event loop: no request sees half of the new state.
            self.state.ranker, self.state.cache, self.state.users = ranker, cache, users
            self.current, self.refused = target, None
            metrics.MODEL_SWAPS.labels("swapped").inc()
            with contextlib.suppress(KeyError):
                metrics.MODEL_INFO.remove(*_model_labels(old))
            metrics.MODEL_INFO.labels(*_model_labels(ranker)).set(1)
            log.info(
                "swapped model %s -> %s",
                old.manifest.model_version,
                ranker.manifest.model_version,
            )
            return True

    def _load(self, target: Path) -> Ranker:
        return load_ranker(target, self.settings)

    @staticmethod
    async def _warm(users: UserStates) -> None:
        # The first runs of a session allocate its arenas: pay that before taking traffic.
        ranker, timings = users.ranker, Timings()
        state = await users.infer(timings, ranker.encode_user, 0, History.empty())
        await users.infer(timings, ranker.score, 0, state, [0], [5000])


def _model_labels(ranker: Ranker) -> tuple[str, str, str, str]:
    m = ranker.manifest
    return (m.model_version, ranker.provider, str(m.opset), m.user_stream)
