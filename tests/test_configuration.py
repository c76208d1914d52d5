"""Configuration validation and serialisation."""

from __future__ import annotations

import pytest
from conftest import tiny_config, tiny_nar_config
from transformers import AutoConfig

from ella_v_hf import EllaVConfig, EllaVNARConfig


def test_defaults_follow_the_paper():
    config = EllaVConfig(frame_rate=75.0)
    assert config.max_frames_per_phone == 30  # 0.4 s at 75 Hz
    assert config.layout == "ella-v" and config.global_advance and config.local_advance == 1
    assert EllaVConfig(layout="vall-e").local_advance == 0
    assert config.vocab_size == 4 + config.num_phonemes + config.codebook_size
    assert (config.pad_token_id, config.bos_token_id, config.eop_token_id, config.eos_token_id) == (0, 1, 2, 3)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(layout="valle"), "Unknown layout"),
        (dict(layout="vall-e", local_advance=2), "no phoneme tokens to advance"),
        (dict(layout="vall-e", global_advance=False), "needs global_advance=True"),
        (dict(global_advance=False, prefix_bidirectional_attention=True), "needs global_advance=True"),
        (dict(local_advance=-1), "local_advance must be >= 0"),
        (dict(max_frames_per_phone=0), "max_frames_per_phone must be >= 1"),
        (dict(hidden_size=30, num_attention_heads=4), "multiple of num_attention_heads"),
        (dict(num_attention_heads=4, num_key_value_heads=3), "multiple of num_key_value_heads"),
        (dict(num_phonemes=0), "num_phonemes must be >= 1"),
        (dict(codebook_size=1), "codebook_size must be >= 2"),
        (dict(num_hidden_layers=0), "num_hidden_layers must be > 0"),
        (dict(frame_rate=0), "frame_rate must be > 0"),
        (dict(hidden_dropout=1.5), "hidden_dropout must be in"),
        (dict(head_dim=7), "head_dim must be even"),
    ],
)
def test_invalid_gar_configs_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**kwargs)


def test_invalid_nar_config_raises():
    with pytest.raises(ValueError, match="needs num_codebooks >= 2"):
        tiny_nar_config(num_codebooks=1)


def test_round_trip(tmp_path):
    config = tiny_config(layout="ella-v", global_advance=False, local_advance=3, max_frames_per_phone=7)
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, EllaVConfig)
    assert (loaded.global_advance, loaded.local_advance, loaded.max_frames_per_phone) == (False, 3, 7)
    assert loaded.layout_spec == config.layout_spec and loaded.token_space == config.token_space
    nar = tiny_nar_config()
    nar.save_pretrained(tmp_path / "nar")
    assert isinstance(AutoConfig.from_pretrained(tmp_path / "nar"), EllaVNARConfig)
