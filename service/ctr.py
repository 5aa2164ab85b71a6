"""The SegRec CTR head of an artifact: its id vocabularies and the feeds of one session run.

The head (``ctr.onnx``, see `export.ctr`) takes the interest model's named inputs plus the
interest logits of the same rows and returns ``ctr`` (B,), the probability of an effective
view, ``sigmoid(sum_j softmax(p)_j y_j)`` over the video's real slots in mode segrec. The
service feeds it all C candidates of a request as C rows of one run: the user's history is
repeated per row, because DIN attends from every candidate slot to every history view.

SegRec builds its vocabularies from its own training rows, so raw ids are looked up in the
head's vocabularies here, not in the interest model's. Histories are laid out as in SegRec's
batches (`segrec.data.SegRecInputs.batch`): most recent first, the real views then padding
(video 0, exit slot 0, one segment, mask False), ``max(1, h)`` columns.

Notation: ``C`` candidates, ``h`` real history views used (at most the head's history
length), ``H = max(h, 1)``, ``S`` slots.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from export.manifest import ArtifactError, CtrSpec
from segint.vocab import Vocab
from service.history import History, history_feeds

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class CtrHead:
    """What the ranker needs besides the ``ctr`` session."""

    spec: CtrSpec
    users: Vocab
    videos: Vocab
    s_max: int

    @classmethod
    def load(cls, folder: Path, spec: CtrSpec, s_max: int) -> CtrHead:
        """The head described by ``spec`` in the artifact ``folder``.

        Raises:
            ArtifactError: a vocabulary file is missing or unreadable.
        """
        vocabs = []
        for name in (spec.vocab_users, spec.vocab_videos):
            try:
                vocabs.append(Vocab.load(folder / name))
            except (OSError, ValueError) as e:
                raise ArtifactError(f"{folder / name}: cannot read the vocabulary ({e})") from None
        return cls(spec, vocabs[0], vocabs[1], s_max)

    def feeds(
        self,
        user_id: int,
        history: History,
        video_ids: npt.ArrayLike,
        n_segments: IntArray,
        interest_logits: npt.NDArray[np.float32],
    ) -> dict[str, npt.NDArray[np.generic]]:
        """Feeds of one run over ``C`` candidates.

        Args:
            user_id: raw user id.
            history: the user's views, most recent first.
            video_ids: (C,) raw candidate ids.
            n_segments: (C,) N of each candidate, 1..S.
            interest_logits: (C, S) the interest model's logits for these candidates.
        """
        c = len(n_segments)
        hist = history_feeds(history, self.videos, self.spec.history_len, self.s_max)  # (1, H)
        return {
            "user_ids": np.repeat(self.users.lookup([user_id]), c),  # (C,)
            "video_ids": self.videos.lookup(video_ids),  # (C,)
            "n_segments": n_segments,  # (C,)
            **{name: np.repeat(x, c, axis=0) for name, x in hist.items()},  # (C, H)
            "interest_logits": np.ascontiguousarray(interest_logits, dtype=np.float32),  # (C, S)
        }
