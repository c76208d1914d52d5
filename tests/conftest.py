"""Shared fixtures: tiny configurations (hidden 32, 2 layers) and random utterances."""

from __future__ import annotations

import random

import pytest
import torch

from ella_v_hf import EllaVConfig, EllaVNARConfig, build_gar_sequence

TINY = dict(
    num_phonemes=10,
    codebook_size=16,
    num_codebooks=4,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=64,
    frame_rate=50.0,
    sampling_rate=16000,
)


def tiny_config(**overrides) -> EllaVConfig:
    return EllaVConfig(**{**TINY, **overrides})


def tiny_nar_config(**overrides) -> EllaVNARConfig:
    return EllaVNARConfig(**{**TINY, **overrides})


def random_utterance(rng: random.Random, config: EllaVConfig, n_phonemes: int | None = None):
    """Random phonemes, durations (some zero) and codes."""
    n = n_phonemes or rng.randint(2, 5)
    phonemes = [rng.randrange(config.num_phonemes) for _ in range(n)]
    durations = [rng.choice([0, 1, 2, 3, 4]) for _ in range(n)]
    durations[-1] = max(durations[-1], 1)
    codes = [rng.randrange(config.codebook_size) for _ in range(sum(durations))]
    return phonemes, durations, codes


def random_sequence(rng: random.Random, config: EllaVConfig, n_phonemes: int | None = None) -> list[int]:
    phonemes, durations, codes = random_utterance(rng, config, n_phonemes)
    return build_gar_sequence(phonemes, durations, codes, config.token_space, config.layout_spec).input_ids


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
