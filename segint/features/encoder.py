"""CLIP vision encoders built from a config, with weights from a local file only.

Why HF ``transformers`` and not open_clip: open_clip imports torchvision at import time, and
no PyPI torchvision build imports beside our pinned torch; the reference itself used HF
``CLIPVisionModel``. We build ``CLIPVisionModelWithProjection`` from a config (never
``from_pretrained``, so nothing is ever downloaded) and load a local state dict, accepting
both layouts:

* HF (``vision_model.*``, ``visual_projection.weight``; a full ``CLIPModel`` file works too,
  its text tower is ignored), ``.safetensors`` or ``.bin``/``.pt``;
* open_clip / OpenAI (``visual.*``, a state dict or OpenAI's TorchScript archive), converted
  to the HF layout (`open_clip_to_hf`).

Encoder names: ``hf:NAME`` / ``open_clip:NAME`` with a preset NAME (`PRESETS`,
`OPEN_CLIP_NAMES`) or a path to a local JSON config (HF ``CLIPVisionConfig``/``CLIPConfig``
fields, or an open_clip model config with ``vision_cfg``).

Features (B images -> (B, D)): ``patch_mean`` = mean of the last hidden state's patch tokens,
CLS dropped, before the post-LayerNorm (the reference's SegMM feature, D = width);
``projected`` = CLIP's image embedding (post-LN CLS through the projection, not normalised).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from segint.errors import SegintError

FEATURES = ("patch_mean", "projected")
_LARGE = {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24}
_BASE = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12}
# HF CLIPVisionConfig fields of the released OpenAI CLIP vision towers.
PRESETS: dict[str, dict[str, Any]] = {
    "clip-vit-large-patch14-336": {
        **_LARGE, "num_attention_heads": 16, "image_size": 336, "patch_size": 14,
        "projection_dim": 768,
    },
    "clip-vit-large-patch14": {
        **_LARGE, "num_attention_heads": 16, "image_size": 224, "patch_size": 14,
        "projection_dim": 768,
    },
    "clip-vit-base-patch16": {
        **_BASE, "num_attention_heads": 12, "image_size": 224, "patch_size": 16,
        "projection_dim": 512,
    },
    "clip-vit-base-patch32": {
        **_BASE, "num_attention_heads": 12, "image_size": 224, "patch_size": 32,
        "projection_dim": 512,
    },
}  # fmt: skip
# open_clip model names -> (preset, activation). ViT-L-14-336 exists only with OpenAI weights
# (QuickGELU); other names use open_clip's GELU unless suffixed "-quickgelu".
OPEN_CLIP_NAMES = {
    "ViT-L-14-336": ("clip-vit-large-patch14-336", "quick_gelu"),
    "ViT-L-14": ("clip-vit-large-patch14", "gelu"),
    "ViT-B-16": ("clip-vit-base-patch16", "gelu"),
    "ViT-B-32": ("clip-vit-base-patch32", "gelu"),
}


@dataclass(frozen=True)
class EncoderSpec:
    """A parsed ``--encoder`` name: the HF vision config it maps to."""

    name: str  # as given, recorded in the store
    family: str  # "hf" or "open_clip" (the expected weight layout)
    config: dict[str, Any]  # CLIPVisionConfig fields

    @property
    def image_size(self) -> int:
        return int(self.config["image_size"])


def _open_clip_config(path: Path, cfg: dict[str, Any]) -> dict[str, Any]:
    v = cfg.get("vision_cfg")
    if not isinstance(v, dict):
        raise SegintError(f"{path}: open_clip config needs a 'vision_cfg' object")
    width = int(v["width"])
    return {
        "hidden_size": width,
        "intermediate_size": int(width * float(v.get("mlp_ratio", 4.0))),
        "num_hidden_layers": int(v["layers"]),
        "num_attention_heads": width // int(v.get("head_width", 64)),
        "image_size": int(v["image_size"]),
        "patch_size": int(v["patch_size"]),
        "projection_dim": int(cfg.get("embed_dim", width)),
        "hidden_act": "quick_gelu" if cfg.get("quick_gelu") else "gelu",
    }


def parse_encoder(name: str) -> EncoderSpec:
    """Resolve ``hf:NAME`` or ``open_clip:NAME`` (preset or local JSON config path)."""
    family, sep, rest = name.partition(":")
    if not sep or family not in ("hf", "open_clip") or not rest:
        raise SegintError(f"--encoder must be hf:NAME or open_clip:NAME, got {name!r}")
    path = Path(rest)
    if rest.endswith(".json"):
        if not path.is_file():
            raise SegintError(f"encoder config not found: {path}")
        cfg = json.loads(path.read_text())
        if family == "open_clip":
            return EncoderSpec(name, family, _open_clip_config(path, cfg))
        cfg = cfg.get("vision_config", cfg)  # a full CLIPConfig holds the vision part
        keys = set(PRESETS["clip-vit-base-patch32"]) | {"hidden_act", "layer_norm_eps"}
        return EncoderSpec(name, family, {k: v for k, v in cfg.items() if k in keys})
    if family == "hf":
        preset = rest.removeprefix("openai/")
        if preset not in PRESETS:
            raise SegintError(f"unknown HF encoder {rest!r}; presets: {', '.join(PRESETS)}")
        return EncoderSpec(name, family, {**PRESETS[preset], "hidden_act": "quick_gelu"})
    base, quick = rest.removesuffix("-quickgelu"), rest.endswith("-quickgelu")
    if base not in OPEN_CLIP_NAMES:
        raise SegintError(f"unknown open_clip model {rest!r}; known: {', '.join(OPEN_CLIP_NAMES)}")
    preset, act = OPEN_CLIP_NAMES[base]
    return EncoderSpec(
        name, family, {**PRESETS[preset], "hidden_act": "quick_gelu" if quick else act}
    )


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a local weights file (.safetensors, torch pickle, or TorchScript archive)."""
    p = Path(path)
    if not p.is_file():
        raise SegintError(
            f"weights file not found: {p} (segint never downloads weights; save the "
            "model's .safetensors/.bin file locally and pass it with --weights)"
        )
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            return dict(load_file(str(p)))
        try:
            obj = torch.load(p, map_location="cpu", weights_only=True)
        except RuntimeError:  # OpenAI's released .pt files are TorchScript archives
            obj = torch.jit.load(str(p), map_location="cpu").state_dict()  # type: ignore[no-untyped-call, unused-ignore]
    except Exception as e:
        raise SegintError(f"{p}: cannot read weights: {type(e).__name__}: {e}") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict):
        raise SegintError(f"{p}: not a state dict")
    return {k.removeprefix("module."): v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def open_clip_to_hf(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an open_clip/OpenAI ``visual.*`` state dict to HF's vision layout.

    The fused attention input projection ``in_proj_{weight,bias}`` (3W, W) splits into q, k, v
    in that order; ``visual.proj`` (W, P) is applied as ``x @ proj``, HF's Linear as
    ``x @ W.T``, so it is transposed.
    """
    simple = {
        "conv1.weight": "embeddings.patch_embedding.weight",
        "class_embedding": "embeddings.class_embedding",
        "positional_embedding": "embeddings.position_embedding.weight",
        "ln_pre": "pre_layrnorm",  # (sic) HF's spelling
        "ln_post": "post_layernorm",
    }
    block = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "attn.out_proj": "self_attn.out_proj"}
    block |= {"mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"}
    out: dict[str, torch.Tensor] = {}
    for key, t in sd.items():
        if not key.startswith("visual."):
            continue  # text tower, logit_scale
        k = key.removeprefix("visual.")
        if k == "proj":
            out["visual_projection.weight"] = t.t().contiguous()
            continue
        if k.startswith("transformer.resblocks."):
            i, _, rest = k.removeprefix("transformer.resblocks.").partition(".")
            prefix = f"vision_model.encoder.layers.{i}."
            if rest.startswith("attn.in_proj_"):
                kind = rest.removeprefix("attn.in_proj_")  # weight | bias
                for name, part in zip("qkv", t.chunk(3, dim=0), strict=True):
                    out[f"{prefix}self_attn.{name}_proj.{kind}"] = part.contiguous()
                continue
            for src, dst in block.items():
                if rest.startswith(src + "."):
                    rest = dst + rest[len(src) :]
                    break
            out[prefix + rest] = t
            continue
        for src, dst in simple.items():
            if k == src or k.startswith(src + "."):
                k = dst + k[len(src) :]
                break
        out["vision_model." + k] = t
    return out


class ClipVisionEncoder(torch.nn.Module):
    """Images (B, 3, R, R) normalised -> features (B, D) of the chosen kind."""

    def __init__(self, spec: EncoderSpec, feature: str) -> None:
        super().__init__()
        from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

        if feature not in FEATURES:
            raise SegintError(f"--feature must be one of {FEATURES}, got {feature!r}")
        self.spec, self.feature = spec, feature
        config = CLIPVisionConfig(**spec.config)
        self.model = CLIPVisionModelWithProjection(config)
        self.dim = config.projection_dim if feature == "projected" else config.hidden_size

    def load_weights(self, sd: dict[str, torch.Tensor], source: str) -> None:
        """Load an HF or open_clip state dict; every weight the feature needs must be there."""
        if any(k.startswith("visual.") for k in sd):
            sd = open_clip_to_hf(sd)
        sd = {k: v for k, v in sd.items() if k.startswith(("vision_model.", "visual_projection."))}
        expected = self.model.state_dict()
        missing = [k for k in expected if k not in sd and not k.endswith("position_ids")]
        if self.feature == "patch_mean":  # the projection is unused; files may omit it
            missing = [k for k in missing if not k.startswith("visual_projection.")]
        unexpected = [k for k in sd if k not in expected]
        wrong = [k for k in sd if k in expected and sd[k].shape != expected[k].shape]
        if missing or unexpected or wrong:
            first = (missing or unexpected or wrong)[0]
            shapes = (
                f" ({tuple(sd[first].shape)} vs {tuple(expected[first].shape)})"
                if wrong and first == wrong[0]
                else ""
            )
            raise SegintError(
                f"{source}: weights do not fit {self.spec.name}: {len(missing)} missing, "
                f"{len(unexpected)} unexpected, {len(wrong)} of another shape, e.g. {first}"
                f"{shapes} (wrong --encoder?)"
            )
        self.model.load_state_dict(sd, strict=False)

    @torch.inference_mode()
    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        out = self.model(pixel_values=pixels)
        y: torch.Tensor
        if self.feature == "projected":
            y = out.image_embeds  # (B, P)
        else:
            y = out.last_hidden_state[:, 1:, :].mean(dim=1)  # (B, T, W) -> (B, W), CLS dropped
        return y


def load_encoder(
    encoder: str, weights: str | Path, feature: str = "patch_mean", device: str = "cpu"
) -> ClipVisionEncoder:
    """Build the encoder named ``encoder`` with weights from the local file ``weights``."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SegintError(f"--device {device}: no CUDA device is available")
    if device != "cpu" and not device.startswith("cuda"):
        raise SegintError(f"--device must be cpu or cuda[:N], got {device!r}")
    spec = parse_encoder(encoder)
    sd = read_state_dict(weights)  # fails fast on a missing file, before building the model
    model = ClipVisionEncoder(spec, feature)
    model.load_weights(sd, str(weights))
    return model.eval().to(device)
