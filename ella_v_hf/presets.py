"""Named model sizes shared by the CLI, the training configs and the documentation."""

from __future__ import annotations

from typing import Any

#: Transformer dimensions per preset (the same for the GAR and the NAR).
PRESETS: dict[str, dict[str, Any]] = {
    # CPU-scale model for the offline demo (~5 M parameters per model with a small vocabulary).
    "tiny": {
        "hidden_size": 256,
        "num_hidden_layers": 6,
        "num_attention_heads": 4,
        "intermediate_size": 768,
        "gated_mlp": True,
        "hidden_act": "silu",
    },
    # The paper's size: 12 layers, 1024 hidden, 16 heads, 4096 FFN, classic 2-matrix feed-forward.
    "base": {
        "hidden_size": 1024,
        "num_hidden_layers": 12,
        "num_attention_heads": 16,
        "intermediate_size": 4096,
        "gated_mlp": False,
        "hidden_act": "gelu",
    },
}


def preset(name: str) -> dict[str, Any]:
    """A copy of the dimensions of preset ``name``.

    Raises:
        ValueError: For an unknown preset name.
    """
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}; available: {sorted(PRESETS)}")
    return dict(PRESETS[name])
