"""SegRecConfig: the frozen, validated configuration of one SegRec CTR model.

Every field that changes the parameter set or the computation lives here; a run directory
stores it (``segrec.json``) and the network is always rebuilt from it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

BACKBONES = ("widedeep", "din")
# video: plain video-level backbone; the slotted modes score every slot and integrate. segmean
# (uniform 1/N weights, i.e. SegRec with constant interest) is our ablation, not the paper's.
# survival weights slots by P(reach slot j) under the interest model's exit distribution, plus
# its completion outcome; features is the video-level backbone with the interest model's
# per-candidate summaries (segrec.network.interest_features) as extra dense inputs.
MODES = (
    "video",
    "segsum",
    "segmean",
    "segadjust",
    "itemposition",
    "segrec",
    "survival",
    "features",
)
# Modes whose inputs include the frozen interest model's logits.
INTEREST_MODES = ("segrec", "survival", "features")
ACTIVATIONS = ("dice", "prelu")


@dataclass(frozen=True)
class SegRecConfig:
    backbone: str  # widedeep | din
    mode: str  # video | segsum | segmean | segadjust | itemposition | segrec | survival | features
    n_users: int  # user-ID table rows, including row 0 = unknown user
    n_videos: int  # video-ID table rows, including row 0 = unknown video
    s_max: int = 40  # S: slots on the segment axis (same as the interest model's)
    history_len: int = 20  # H: previous views DIN attends over (WideDeep ignores history)
    emb_dim: int = 32  # d: width of every field embedding
    hidden: tuple[int, ...] = (64,)  # deep MLP hidden widths (reference: [64])
    att_hidden: tuple[int, ...] = (64,)  # DIN attention-unit MLP hidden widths
    activation: str = "dice"  # DIN MLP activation: dice (reference) | prelu
    dropout: float = 0.0  # dropout in the deep MLPs
    content_dim: int = 0  # Dc: per-segment content feature width (0 = no content field)
    learn_temperature: bool = False  # segrec/itemposition: w = softmax(t * p), t learned, init 1
    # Mode features: the label's view-ratio threshold of a video with N segments, index N - 1
    # (`segrec.labels.thresholds_by_n`); adds the feature P(effective) = P(play > threshold)
    # under the exit distribution. Empty: no such feature.
    effective_thresholds: tuple[float, ...] = ()
    # DIN, mode features: the dense interest features enter through a linear term on the output
    # logit (like WideDeep's wide part) instead of the Dice MLP.
    dense_linear: bool = False
    # DIN, mode features: the dense features enter through the linear term AND the MLP
    # (implies the linear term; ``dense_linear`` alone keeps them out of the MLP).
    dense_both: bool = False
    # Mode features: per-column centre and scale of the dense features (their mean and standard
    # deviation on the training rows), applied as ``(f - centre) / scale`` before the backbone.
    # Empty: the features enter as they are, in [0, 1].
    dense_center: tuple[float, ...] = ()
    dense_scale: tuple[float, ...] = ()
    # Platt scaling of the output logit, (scale, bias), fitted on validation rows after training
    # (`segrec.train.fit_platt`); (1, 0) is the identity. AUC-neutral; it moves LogLoss only.
    calibration: tuple[float, float] = (1.0, 0.0)

    def __post_init__(self) -> None:
        lists = ("hidden", "att_hidden", "effective_thresholds", "calibration")
        for name in (*lists, "dense_center", "dense_scale"):
            # JSON gives lists; keep the config hashable
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {self.backbone!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        for name in ("n_users", "n_videos", "s_max", "history_len", "emb_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if isinstance(self.content_dim, bool) or self.content_dim < 0:
            raise ValueError(f"content_dim must be >= 0, got {self.content_dim!r}")
        for name in ("hidden", "att_hidden"):
            widths = getattr(self, name)
            if not isinstance(widths, tuple) or not all(
                isinstance(w, int) and w >= 1 for w in widths
            ):
                raise ValueError(f"{name} must be a list of integers >= 1, got {widths!r}")
        if self.learn_temperature and self.mode not in ("segrec", "itemposition"):
            raise ValueError(
                f"learn_temperature applies to modes segrec / itemposition, not {self.mode}"
            )
        t = self.effective_thresholds
        if t and (self.mode != "features" or len(t) != self.s_max):
            raise ValueError(
                f"effective_thresholds needs mode features and s_max ({self.s_max}) values, "
                f"got {len(t)} in mode {self.mode}"
            )
        if not all(isinstance(v, int | float) and 0.0 < v < float("inf") for v in t):
            raise ValueError(f"effective_thresholds must be positive and finite, got {t!r}")
        if self.dense_linear and (self.backbone != "din" or self.mode != "features"):
            raise ValueError("dense_linear applies to backbone din in mode features")
        if self.dense_both and (self.backbone != "din" or self.mode != "features"):
            raise ValueError("dense_both applies to backbone din in mode features")
        centre, scale = self.dense_center, self.dense_scale
        if centre or scale:
            if self.mode != "features" or len(centre) != len(scale):
                raise ValueError(
                    "dense_center and dense_scale need mode features and one value per feature, "
                    f"got {len(centre)} and {len(scale)} in mode {self.mode}"
                )
            if not all(math.isfinite(v) for v in centre) or not all(
                math.isfinite(v) and v > 0 for v in scale
            ):
                raise ValueError(f"dense_scale must be finite and > 0, got {scale!r}")
        c = self.calibration
        if len(c) != 2 or not all(isinstance(v, int | float) for v in c) or not c[0] > 0.0:
            raise ValueError(f"calibration must be (scale > 0, bias), got {c!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def slotted(self) -> bool:
        """True when the backbone scores every slot (all modes but ``video`` and ``features``)."""
        return self.mode not in ("video", "features")

    @property
    def method(self) -> str:
        """Name of the method in result tables: the mode, plus "+temp" with a learned temperature
        or "+eff" with the P(effective) feature, "+lin" with DIN's linear dense term ("+both"
        with the linear term and the MLP), "+std" with standardised dense features."""
        if self.learn_temperature:
            return f"{self.mode}+temp"
        name = f"{self.mode}+eff" if self.effective_thresholds else self.mode
        if self.dense_both:
            name += "+both"
        elif self.dense_linear:
            name += "+lin"
        return f"{name}+std" if self.dense_center else name

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SegRecConfig:
        """Build from a plain (JSON) dict; unknown keys raise ValueError naming them."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown SegRec config keys: {', '.join(unknown)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["hidden"], out["att_hidden"] = list(self.hidden), list(self.att_hidden)
        out["effective_thresholds"] = list(self.effective_thresholds)
        out["calibration"] = list(self.calibration)
        out["dense_center"], out["dense_scale"] = list(self.dense_center), list(self.dense_scale)
        return out
