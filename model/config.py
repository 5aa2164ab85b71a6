"""ModelConfig: the frozen, validated configuration of the segment interest model.

The model is always rebuilt from this config (checkpoints hold state_dict + config), so every
field that changes the parameter set or the computation lives here. `ModelSpec` is its
architecture part, what a training config sets (``model:`` in configs/*.yaml); `ModelConfig`
adds the sizes taken from the data (vocabularies, slots, history length, side tables).
``from_dict`` / ``to_dict`` map both to and from the plain dicts of the YAML files; unknown
keys are errors.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Self

MODALITIES = ("id", "content")
USER_STREAMS = ("self", "cross")
EXIT_PRIOR_BASES = ("global", "n_segments")
COUNT_MODES = ("loo", "kfold")


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """The architecture: every `ModelConfig` field but the sizes training takes from the data
    (vocabularies, side tables, ``data.s_max`` / ``data.history_len``). `TrainConfig.model`."""

    d_model: int = 64  # d: token width
    n_heads: int = 4  # attention heads (d_model must divide evenly)
    n_layers: int = 2  # L: user-video cross-attention layers per modality (0 = no encoder)
    ffn_dim: int = 128  # hidden width of each layer's feed-forward block
    dropout: float = 0.1  # dropout on embeddings, attention and residual branches
    id_dropout: float = 0.0  # training only: share of user/video ids replaced by "unknown" (0)
    modalities: tuple[str, ...] = ("id",)  # any of "id", "content": one encoder per modality
    content_dim: int = 0  # Dc: per-segment content feature width (> 0 iff "content")
    user_stream: str = "self"  # "self": user tokens attend to user tokens only (cacheable);
    # "cross": user tokens also attend to the target video (paper; recomputed per candidate)
    position_bias: bool = True  # learned per-(N, slot) logit offset (paper eq. 7), starts at 0
    history_tokens: bool = True  # one user token per history view (False: user-ID token only)
    video_profile: bool = True  # learned per-video per-slot logit offset, starts at zero
    # Pseudo-views of the global exit distribution that smooth each video's exit counts into a
    # log-prior added to the logits (ItemPosition+prior inside the model; 0 = off). The counts
    # are a buffer set from the training rows (InterestDecoder.set_exit_counts).
    exit_prior: float = 0.0
    # What those pseudo-views are of: "global" (the exit profile of all training views) or
    # "n_segments" (the profile of the training views of videos with the same segment count
    # N, ItemPosition+prior|N inside the model; a buffer like the counts). Unknown videos get
    # that base profile.
    exit_prior_base: str = "global"
    # Adaptive smoothing: the pseudo-view count becomes a learned function of the video's
    # view count n_v, a(n_v) = exit_prior * exp(alpha + beta * log1p(n_v)) (two parameters,
    # starting at 0: a = exit_prior), as a learner that sees the count adapts its smoothing.
    exit_prior_adaptive: bool = False
    # Hidden width of a per-slot logit correction learned from the exit prior's parts (log
    # prior, log of the profile it is smoothed toward, log1p of the video's view count), the
    # slot's features and the user residual: lets the network smooth adaptively and relate
    # the user to the video's exit shape. Its output layer starts at zero. 0 = off.
    prior_mlp: int = 0
    # Training only: how a training row, itself one of the rows the exit counts are taken
    # from, is kept out of its own prior and user residual. "loo": its own exit is subtracted
    # (leave-one-out; the profile is then always one count short at the row's true exit, a
    # bias against its own outcome that no validation or test row has). "kfold": each fitting
    # row falls in one of ``count_folds`` folds by a stable hash of the row, and a training
    # row is scored with the counts of the other folds only (training.wrapper). The served
    # model always has the full counts.
    count_mode: str = "loo"
    count_folds: int = 5  # K of count_mode "kfold"
    # Per-user history statistics (completion rate, mean watched fraction, early-exit rate,
    # log history length, has-history) computed inside the model from the history inputs and
    # added, projected, to the user token: user-level signal with no new inputs.
    history_stats: bool = False
    # User propensity tilt (needs exit_prior > 0): per user, the residual of watched fraction
    # against the exit prior's expected watched fraction over the history views, summed and
    # shrunk toward 0 by ``user_tilt_shrink`` pseudo-views, moves the exit distribution toward
    # later slots (users who watch more than the lookup expects) through a learned function
    # of the slot's position (slot features), initialised to ``user_tilt`` on j / N. 0 = off.
    user_tilt: float = 0.0
    user_tilt_shrink: float = 8.0  # k0: R = sum of the history residuals / (views + k0)
    fusion_heads: int = 2  # heads of the bilinear fusion across modalities (paper eq. 6)
    mask_impossible: bool = True  # slots j > N get a constant +1e4 logit ("never the exit")
    reference_last_layer_bug: bool = False  # quirk: encoder returns the last layer's *input*
    attn_logit_dropout: bool = False  # quirk: dropout on attention logits, not probabilities

    def __post_init__(self) -> None:
        # YAML gives lists; keep the dataclass hashable and frozen with a tuple.
        if isinstance(self.modalities, list):
            object.__setattr__(self, "modalities", tuple(self.modalities))
        for name in ("d_model", "n_heads", "ffn_dim", "fusion_heads"):
            _check_int(name, getattr(self, name), minimum=1)
        _check_int("n_layers", self.n_layers, minimum=0)
        _check_int("content_dim", self.content_dim, minimum=0)
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        for name in ("dropout", "id_dropout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a number, got {value!r}")
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value}")
        if isinstance(self.exit_prior, bool) or not isinstance(self.exit_prior, int | float):
            raise ValueError(f"exit_prior must be a number, got {self.exit_prior!r}")
        if self.exit_prior < 0:
            raise ValueError(f"exit_prior must be >= 0 (0 = off), got {self.exit_prior}")
        for name in ("user_tilt", "user_tilt_shrink"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        if self.user_tilt > 0 and self.exit_prior <= 0:
            raise ValueError(
                f"user_tilt={self.user_tilt} needs exit_prior > 0 (its residuals are against "
                f"the exit prior), got exit_prior={self.exit_prior}"
            )
        if self.exit_prior_adaptive is True and self.exit_prior <= 0:
            raise ValueError("exit_prior_adaptive needs exit_prior > 0")
        _check_int("prior_mlp", self.prior_mlp, minimum=0)
        if self.prior_mlp > 0 and self.exit_prior <= 0:
            raise ValueError("prior_mlp needs exit_prior > 0")
        if self.count_mode not in COUNT_MODES:
            raise ValueError(f"count_mode must be one of {COUNT_MODES}, got {self.count_mode!r}")
        _check_int("count_folds", self.count_folds, minimum=2)
        if self.exit_prior_base not in EXIT_PRIOR_BASES:
            raise ValueError(
                f"exit_prior_base must be one of {EXIT_PRIOR_BASES}, got {self.exit_prior_base!r}"
            )
        if not isinstance(self.modalities, tuple) or not self.modalities:
            raise ValueError(f"modalities must be a non-empty list, got {self.modalities!r}")
        unknown = [m for m in self.modalities if m not in MODALITIES]
        if unknown or len(set(self.modalities)) != len(self.modalities):
            raise ValueError(
                f"modalities must be distinct values from {MODALITIES}, got {self.modalities!r}"
            )
        if ("content" in self.modalities) != (self.content_dim > 0):
            raise ValueError(
                f"content_dim must be > 0 exactly when 'content' is in modalities, "
                f"got content_dim={self.content_dim}, modalities={self.modalities!r}"
            )
        if self.user_stream not in USER_STREAMS:
            raise ValueError(f"user_stream must be one of {USER_STREAMS}, got {self.user_stream!r}")
        if len(self.modalities) > 1 and self.d_model % self.fusion_heads:
            raise ValueError(
                f"d_model={self.d_model} is not divisible by fusion_heads={self.fusion_heads}"
            )
        for name in (
            "position_bias",
            "history_tokens",
            "history_stats",
            "exit_prior_adaptive",
            "video_profile",
            "mask_impossible",
            "reference_last_layer_bug",
            "attn_logit_dropout",
        ):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.reference_last_layer_bug and self.n_layers < 1:
            raise ValueError("reference_last_layer_bug needs n_layers >= 1, got n_layers=0")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Build from a plain (YAML) dict; unknown keys raise ValueError naming them."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown model config keys: {', '.join(unknown)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for YAML (tuples become lists)."""
        out = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


@dataclass(frozen=True, kw_only=True)
class ModelConfig(ModelSpec):
    """A `ModelSpec` plus the sizes the model is built for: what a checkpoint is rebuilt from."""

    n_users: int  # user-ID table rows, including row 0 = unknown user
    n_videos: int  # video-ID table rows, including row 0 = unknown video
    s_max: int = 40  # S: slots on the segment axis (videos shorter than s_max * 5 s)
    history_len: int = 20  # H: most recent history views the model takes
    # Side-table features (training/side.py): the size of each categorical feature's table
    # (code 0 = unknown) of the video / user vocabulary rows; () = none. Set by training from
    # the side tables; the codes are id-indexed buffers (SegmentInterestModel.set_side_features).
    video_side_sizes: tuple[int, ...] = ()
    user_side_sizes: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for name in ("video_side_sizes", "user_side_sizes"):
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        for name in ("n_users", "n_videos", "s_max", "history_len"):
            _check_int(name, getattr(self, name), minimum=1)
        if self.s_max < 2:
            raise ValueError(
                f"s_max must be >= 2 (a view has N + 1 >= 2 outcomes), got {self.s_max}"
            )
        super().__post_init__()
        for name in ("video_side_sizes", "user_side_sizes"):
            sizes = getattr(self, name)
            if not isinstance(sizes, tuple):
                raise ValueError(f"{name} must be a list of integers, got {sizes!r}")
            for size in sizes:
                _check_int(name, size, minimum=1)
            if sizes and "id" not in self.modalities:
                raise ValueError(f"{name} needs the 'id' modality (side features join its tokens)")

    @classmethod
    def from_spec(
        cls,
        spec: ModelSpec,
        *,
        n_users: int,
        n_videos: int,
        s_max: int,
        history_len: int,
        video_side_sizes: tuple[int, ...] = (),
        user_side_sizes: tuple[int, ...] = (),
    ) -> ModelConfig:
        """``spec`` built for these vocabularies, slots, history length and side tables."""
        return cls(
            **{f.name: getattr(spec, f.name) for f in dataclasses.fields(ModelSpec)},
            n_users=n_users,
            n_videos=n_videos,
            s_max=s_max,
            history_len=history_len,
            video_side_sizes=video_side_sizes,
            user_side_sizes=user_side_sizes,
        )

    @property
    def n_user_tokens(self) -> int:
        """M at the configured history length: the user token plus one token per view."""
        return 1 + self.history_len if self.history_tokens else 1


# The ModelConfig fields a ModelSpec leaves to the data (training fills them in).
SIZE_FIELDS = tuple(
    f.name
    for f in dataclasses.fields(ModelConfig)
    if f.name not in {g.name for g in dataclasses.fields(ModelSpec)}
)


def _check_int(name: str, value: object, minimum: int) -> None:
    # bool is an int subclass: `n_layers: true` in a YAML file is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
