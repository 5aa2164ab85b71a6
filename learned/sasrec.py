"""`sasrec`: a self-attentive sequence model (SASRec) over the user's history views.

Shape legend: ``B`` rows, ``H`` history views (most recent first, right-padded), ``S`` slots,
``d`` width.

The sequence is the user's strictly earlier views (`learned.neural`: the histories of the
segment interest model) followed by the target view. A history token is ``e_video + e_N +
Linear([exit / N, 1[watched to the end]]) + e_recency``, i.e. which video, how long, how the
view ended and how long ago (in views); the target token is ``e_video + e_N + e_target``, with
no outcome. Pre-norm Transformer encoder layers attend over the real tokens (padding masked;
every key is earlier than the target, so the read-out at the target token cannot see the
future, which is what SASRec's causal mask ensures). As SASRec, there is no user embedding:
the user is their sequence.

The target token's output ``u`` (B, d) scores every slot: an MLP of ``[u, e_slot(j), e_N]`` gives
the interest logit ``y_j`` of each outcome ``j = 0..N`` (slot ``N`` = watched to the end), and
the exit distribution is ``softmax(-y)`` over those outcomes, the segment interest model's
convention (`segint.heads`). Trained with the cross-entropy of the observed exit slot (rows
whose exit is ``S``, complete views of ``S``-segment videos, have no slot and are skipped, as
in the model's loss). Scores are ``1 - P(exit = j)`` as in `segint.baselines`: the same order
as the logits over the real outcomes, and padding slots (which the paper protocol ranks too)
get 1, the least likely exit, instead of whatever the MLP gives a slot the video does not have.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from learned.base import LearnedInput, LearnedOutput
from learned.neural import FloatArray, IntArray, NeuralConfig, Prepared, fit_network
from segrec.network import EMB_STD, MASK_VALUE, outcome_slots
from training.data import Batch
from training.inference import scores_and_exit_dist

NAME = "sasrec"
N_LAYERS = 2  # self-attention blocks (SASRec: 2)
N_HEADS = 2
DROPOUT = 0.2  # SASRec's default on sparse data


class ExitSoftmaxHead:
    """Interest logits over the outcomes -> cross-entropy of the exit slot; softmax(-y)."""

    def loss(self, out: Tensor, exit_slot: Tensor, n_segments: Tensor) -> Tensor:
        s = out.shape[1]
        keep = exit_slot < s  # (B,) rows whose exit has a slot
        z = (-out).masked_fill(~outcome_slots(n_segments, s), MASK_VALUE)  # (B, S)
        if not keep.any():
            return out.sum() * 0.0
        return F.cross_entropy(z[keep], exit_slot[keep])

    def scores_and_dist(
        self, out: FloatArray, n_segments: IntArray
    ) -> tuple[FloatArray, FloatArray]:
        _, dist = scores_and_exit_dist(out, n_segments)
        return 1.0 - dist, dist


class SASRec(nn.Module):
    """History views + target -> (B, S) interest logits of the target's outcomes."""

    def __init__(self, n_videos: int, s_max: int, history_len: int, d: int):
        super().__init__()
        self.video = nn.Embedding(n_videos, d)
        self.length = nn.Embedding(s_max + 1, d)  # N in 1..S
        self.outcome = nn.Linear(2, d)  # [exit / N, watched to the end] of a history view
        self.recency = nn.Embedding(history_len, d)  # 0 = the most recent history view
        self.target = nn.Parameter(torch.zeros(d))  # marks the target token
        self.slot = nn.Embedding(s_max, d)
        # Slot and N keep torch's N(0, 1) init: they enter the scoring MLP beside the
        # layer-normed u and at EMB_STD they were too small to learn from in a few epochs.
        for emb in (self.video, self.recency):
            nn.init.normal_(emb.weight, std=EMB_STD)
        layer = nn.TransformerEncoderLayer(
            d, N_HEADS, 2 * d, DROPOUT, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(
            layer, N_LAYERS, norm=nn.LayerNorm(d), enable_nested_tensor=False
        )
        self.score = nn.Sequential(nn.Linear(3 * d, 2 * d), nn.ReLU(), nn.Linear(2 * d, 1))
        self.history_len = history_len

    def forward(self, batch: Batch) -> Tensor:  # -> (B, S)
        hv, hx, hn = batch.hist_video_ids, batch.hist_exit_slots, batch.hist_n_segments
        h = min(hv.shape[1], self.history_len)
        hv, hx, hn, mask = hv[:, :h], hx[:, :h], hn[:, :h], batch.hist_mask[:, :h]  # (B, H)
        frac = hx.float() / hn.clamp(min=1).float()
        done = (hx >= hn).float()
        pos = torch.arange(h, device=hv.device)
        hist = (
            self.video(hv)
            + self.length(hn)
            + self.outcome(torch.stack([frac, done], dim=-1))
            + self.recency(pos)[None]
        )  # (B, H, d)
        tgt = self.video(batch.video_ids) + self.length(batch.n_segments) + self.target  # (B, d)
        tokens = torch.cat([tgt[:, None, :], hist], dim=1)  # (B, 1 + H, d)
        pad = torch.cat([torch.zeros_like(mask[:, :1]), ~mask], dim=1)  # (B, 1 + H), True = pad
        u = self.encoder(tokens, src_key_padding_mask=pad)[:, 0]  # (B, d) at the target token
        b, s = u.shape[0], self.slot.num_embeddings
        slots = self.slot.weight[None].expand(b, s, -1)  # (B, S, d)
        n = self.length(batch.n_segments)[:, None, :].expand(b, s, -1)  # (B, S, d)
        pair = torch.cat([u[:, None, :].expand(b, s, -1), slots, n], dim=-1)  # (B, S, 3d)
        return self.score(pair).squeeze(-1)  # (B, S)


def fit_predict(inp: LearnedInput, cfg: NeuralConfig | None = None) -> LearnedOutput:
    """Fit `sasrec` on ``inp``'s training rows (epoch chosen on its validation rows) and give
    the test rows' scores and exit distributions."""
    cfg = cfg or NeuralConfig()

    def make_net(prep: Prepared) -> nn.Module:
        return SASRec(len(prep.videos), inp.s_max, cfg.history_len, cfg.emb_dim)

    scores, dist, settings = fit_network(NAME, make_net, ExitSoftmaxHead(), inp, cfg)
    settings["head"] = "softmax(-y) over the outcomes 0..N (as the segment interest model)"
    return LearnedOutput(scores=scores, exit_dist=dist, watch_slots=None, settings=settings)
