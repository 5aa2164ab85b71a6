"""`din-slot`: the SegRec DIN backbone as a discrete-time hazard model of where a view ends.

DIN is a click model, so each slot ``j < N`` of the target video is one "click": the user
leaves in slot ``j`` given that they reached it. The backbone is `segrec.network.DIN`
unchanged: per slot, the user embedding, the target video, the position (slot ``j`` plus an
embedding of ``N``) and the DIN target attention over the user's history views (video, ``N``
and how each view ended) feed an MLP that gives the hazard logit ``z_j``, ``h_j = sigmoid(z_j)``.

Exit distribution over the ``N + 1`` outcomes (slot ``N`` = watched to the end)::

    P(exit = j) = h_j * prod_{i<j} (1 - h_i)      for j < N
    P(exit = N) = prod_{i<N} (1 - h_i)

The loss is ``-log P(exit = observed)``, which is the summed binary cross-entropy of "left at
slot j" over the slots ``0..min(exit, N-1)`` the view reached. A video with ``N = S`` has no
slot for completion; as in `segint.heads`, its distribution is renormalised over its ``S``
slots. Scores are ``1 - P(exit = j)`` (the convention of `segint.baselines`; padding slots get
1). Fitting, early stopping and histories: `learned.neural`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from learned.base import LearnedInput, LearnedOutput
from learned.neural import FloatArray, IntArray, NeuralConfig, Prepared, fit_network
from segrec.config import SegRecConfig
from segrec.network import DIN, real_slots
from training.data import Batch

NAME = "din-slot"
HIDDEN = (64,)  # output MLP widths (SegRec's reference)
ATT_HIDDEN = (64,)  # attention-unit MLP widths


def hazard_log_probs(z: Tensor, n_segments: Tensor) -> Tensor:
    """(B, S) hazard logits, (B,) N -> (B, S + 1) ``log P(exit = j)`` for j = 0..S.

    Column ``N`` is the completion outcome; columns beyond ``N`` are ``-inf``. Hazards of
    slots ``>= N`` are ignored.
    """
    b, s = z.shape
    real = real_slots(n_segments, s)  # (B, S)
    stay = torch.where(real, F.logsigmoid(-z), torch.zeros_like(z))  # log(1 - h_j), 0 past N
    zero = torch.zeros(b, 1, dtype=z.dtype, device=z.device)
    reach = torch.cat([zero, stay.cumsum(-1)], dim=-1)  # (B, S+1): log P(reach slot j)
    leave = torch.cat([F.logsigmoid(z), zero], dim=-1)  # (B, S+1): log h_j
    j = torch.arange(s + 1, device=z.device)[None, :]
    n = n_segments[:, None]
    logp = reach + torch.where(j < n, leave, torch.zeros_like(leave))  # completion: h_N := 1
    return logp.masked_fill(j > n, float("-inf"))


class HazardHead:
    """Hazard logits -> hazard likelihood loss, and scores / exit distribution (numpy)."""

    def loss(self, out: Tensor, exit_slot: Tensor, n_segments: Tensor) -> Tensor:
        logp = hazard_log_probs(out, n_segments)  # (B, S+1)
        return -logp.gather(1, exit_slot[:, None]).mean()

    def scores_and_dist(
        self, out: FloatArray, n_segments: IntArray
    ) -> tuple[FloatArray, FloatArray]:
        n = torch.from_numpy(np.asarray(n_segments, dtype=np.int64))
        p = hazard_log_probs(torch.from_numpy(out), n).exp().numpy()  # (B, S+1)
        dist = p[:, :-1]  # (B, S): drops only the completion mass of N = S videos
        dist = dist / dist.sum(axis=1, keepdims=True)
        return 1.0 - dist, dist


class DinSlot(nn.Module):
    """`segrec.network.DIN` on a `training.data.Batch`: (B, S) hazard logits."""

    def __init__(self, cfg: SegRecConfig):
        super().__init__()
        self.din = DIN(cfg)

    def forward(self, batch: Batch) -> Tensor:  # -> (B, S)
        out: Tensor = self.din(
            batch.user_ids,
            batch.video_ids,
            batch.n_segments,
            batch.hist_video_ids,
            batch.hist_exit_slots,
            batch.hist_n_segments,
            batch.hist_mask,
        )
        return out


def fit_predict(inp: LearnedInput, cfg: NeuralConfig | None = None) -> LearnedOutput:
    """Fit `din-slot` on ``inp``'s training rows (epoch chosen on its validation rows) and
    give the test rows' scores and exit distributions."""
    cfg = cfg or NeuralConfig()

    def make_net(prep: Prepared) -> nn.Module:
        # Mode "segsum" only makes the backbone score every real slot 0..N-1; the SegRec
        # integration (a weighted sum over slots) is not used here.
        return DinSlot(
            SegRecConfig(
                backbone="din",
                mode="segsum",
                n_users=len(prep.users),
                n_videos=len(prep.videos),
                s_max=inp.s_max,
                history_len=cfg.history_len,
                emb_dim=cfg.emb_dim,
                hidden=HIDDEN,
                att_hidden=ATT_HIDDEN,
            )
        )

    scores, dist, settings = fit_network(NAME, make_net, HazardHead(), inp, cfg)
    settings["head"] = "per-slot hazard (DIN logit of leaving at slot j given slot j reached)"
    return LearnedOutput(scores=scores, exit_dist=dist, watch_slots=None, settings=settings)
