"""Analytic cost of one scoring request: multiply-adds of every matrix product the model runs.

Counts match ``torch.utils.flop_counter`` (which reports 2 FLOPs per multiply-add) on the code
in network.py; element-wise work (LayerNorm, softmax, GELU, masking) and embedding lookups are
not counted. The split follows the serving path:

- ``user_stream="self"``: the user side (``encode_user`` plus the user keys/values that every
  layer's video queries read) is paid once per request; each candidate pays only the video side.
- ``user_stream="cross"``: user tokens attend to the candidate, so everything is per candidate.
"""

from __future__ import annotations

from dataclasses import dataclass

from model.config import ModelConfig


@dataclass(frozen=True)
class FlopCount:
    user_per_request: int  # multiply-adds paid once per request (0 for the cross stream)
    per_candidate: int  # multiply-adds paid for every candidate video
    n_candidates: int

    @property
    def total(self) -> int:
        return self.user_per_request + self.n_candidates * self.per_candidate


def count_flops(cfg: ModelConfig, n_candidates: int = 1) -> FlopCount:
    """Multiply-adds for one user and ``n_candidates`` videos at the configured history length."""
    if n_candidates < 1:
        raise ValueError(f"n_candidates must be >= 1, got {n_candidates}")
    s, m, d, f = cfg.s_max, cfg.n_user_tokens, cfg.d_model, cfg.ffn_dim
    h = m - 1  # history tokens
    n_mod, n_layers = len(cfg.modalities), cfg.n_layers
    n_run = n_layers - 1 if cfg.reference_last_layer_bug else n_layers

    # Embeddings: small structural-feature maps (+ content projections).
    video_emb = user_emb = 0
    for modality in cfg.modalities:
        video_emb += s * 4 * d + (s * cfg.content_dim * d if modality == "content" else 0)
        user_emb += h * 3 * d + (h * cfg.content_dim * d if modality == "content" else 0)

    ffn = 2 * d * f  # per token
    # Video queries over [video ; user] keys, split into the part that needs the user tokens.
    video_step = 2 * s * d * d + 2 * s * d * d + 2 * (s * s * d + s * m * d) + s * d * d + s * ffn
    user_kv = 2 * m * d * d  # keys and values of the user tokens for the video queries
    self_user_step = 3 * m * d * d + 2 * m * m * d + m * d * d + m * ffn
    cross_user_step = (
        2 * m * d * d + 2 * s * d * d + 2 * m * d * d + 2 * (m * s * d + m * m * d)
        + m * d * d + m * ffn
    )  # fmt: skip
    n_pairs = n_mod * (n_mod - 1) // 2
    decoder = n_mod * s * d + n_pairs * s * d * d // cfg.fusion_heads

    if cfg.user_stream == "self":
        user = n_mod * (max(n_layers - 1, 0) * self_user_step + n_run * user_kv) + user_emb
        candidate = n_mod * n_run * video_step + video_emb + decoder
    else:
        user = 0
        encoder = n_run * (video_step + user_kv) + max(n_run - 1, 0) * cross_user_step
        candidate = n_mod * encoder + video_emb + user_emb + decoder
    return FlopCount(user_per_request=user, per_candidate=candidate, n_candidates=n_candidates)
