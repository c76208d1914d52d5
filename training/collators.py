"""Batch construction from prepared rows (``ella-v prepare`` output) for the GAR and the NAR.

Both collators are plain callables over lists of rows, so they serve the Accelerate trainer and
``transformers.Trainer`` alike. GAR sequences come from the layout rule (``build_gar_sequence``).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..modeling import IGNORE_INDEX, EllaVConfig, EllaVNARConfig, build_gar_sequence, frame_phoneme_ids
from ..processing.processing_ella_v import continuation_drops_boundary


@dataclass
class GarCollator:
    """Rows -> ``input_ids``/``attention_mask``/``labels`` ``[B, L]`` (right-padded) for the GAR.

    With ``prompt_pair_probability`` a row is, with that chance, trained as the continuation of
    another row of the same batch by the same speaker (a different sentence): their phonemes,
    durations and first-codebook codes are joined and laid out by the same rule as a prompted
    ``generate()`` (``build_gar_sequence(prompt + target)``), so the GAR sees at training time the
    sequences a voice prompt gives it at inference. Joining follows the processor's rule
    (``continuation_drops_boundary``): with ``separator_ids`` and ``word_boundary_id`` given, a row
    that starts with ``|`` after a prompt ending in a separator loses that ``|``, and its frames (the
    leading pause) join the separator's, as in one recording of both sentences. The loss covers both parts unless
    ``mask_prompt_labels`` (then only the continuation counts: the held-out "prompted" loss). Joined
    rows are up to twice as long as the batch's longest single row.

    Args:
        config: The GAR configuration (token space and layout).
        prompt_pair_probability: Chance in ``[0, 1]`` that a row gets a same-speaker prompt row.
        seed: Seed of the pairing draws (one collator per step makes them reproducible).
        mask_prompt_labels: Leave the prompt part of joined rows out of the loss.
        text_dropout: Chance in ``[0, 1)`` that a row's phoneme tokens all become ``PAD`` (a zero
            embedding; the labels are unchanged, phonemes are never targets): the text-unconditional
            rows that classifier-free guidance needs (``EllaVConfig.text_dropout``). Drawn from its
            own stream, so the prompt pairing does not change with it.
        input_noise: Chance in ``[0, 1)`` that an acoustic *input* token is replaced by an acoustic
            token drawn from the batch's own (its empirical code distribution); labels are unchanged.
            Trains the GAR to continue from codes it would not have chosen itself, as it must after
            a sampled step at inference (exposure bias; not in the paper). Its own stream too.
        separator_ids / word_boundary_id: The tokenizer's separator ids and ``|`` id
            (``EllaVPhonemeTokenizer.separator_token_ids`` / ``word_boundary_token_id``); without
            them rows are joined as they are.
    """

    config: EllaVConfig
    prompt_pair_probability: float = 0.0
    seed: int = 0
    mask_prompt_labels: bool = False
    separator_ids: tuple[int, ...] = ()
    word_boundary_id: int | None = None
    text_dropout: float = 0.0
    input_noise: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.prompt_pair_probability <= 1.0:
            raise ValueError(f"prompt_pair_probability must lie in [0, 1], got {self.prompt_pair_probability}")
        if not 0.0 <= self.text_dropout < 1.0:
            raise ValueError(f"text_dropout must lie in [0, 1), got {self.text_dropout}")
        if not 0.0 <= self.input_noise < 1.0:
            raise ValueError(f"input_noise must lie in [0, 1), got {self.input_noise}")

    def _joined(self, rows: Sequence[dict], rng: random.Random) -> list[tuple[list[int], list[int], list[int], int]]:
        """Per row ``(phoneme_ids, durations, first codebook, prompt tokens)``, a row's prompt row
        first when drawn; ``prompt tokens`` is the length of the prompted prefix (0 for a single row)."""
        space, spec = self.config.token_space, self.config.layout_spec
        parts = []
        for i, row in enumerate(rows):
            phonemes, durations, first = list(row["phoneme_ids"]), list(row["durations"]), list(row["codes"][0])
            prompt_tokens = 0
            if self.prompt_pair_probability and rng.random() < self.prompt_pair_probability:
                partners = [
                    j for j, other in enumerate(rows)
                    if j != i and other.get("speaker_id") == row.get("speaker_id") and other.get("prompt_id") != row.get("prompt_id")
                ]
                if partners:
                    prompt = rows[rng.choice(partners)]
                    prompt_phonemes, prompt_durations = list(prompt["phoneme_ids"]), list(prompt["durations"])
                    if self.word_boundary_id is not None and continuation_drops_boundary(
                        prompt_phonemes, phonemes, self.separator_ids, self.word_boundary_id
                    ):
                        prompt_durations[-1] += durations[0]  # the leading pause joins the prompt's separator
                        phonemes, durations = phonemes[1:], durations[1:]
                    first = list(prompt["codes"][0]) + first
                    if self.mask_prompt_labels:  # the prefix a prompted generate() starts from
                        prompt_frames = sum(prompt_durations)
                        prefix = build_gar_sequence(prompt_phonemes + phonemes, prompt_durations, first[:prompt_frames], space, spec)
                        prompt_tokens = len(prefix.input_ids)
                    phonemes = prompt_phonemes + phonemes
                    durations = prompt_durations + durations
            parts.append((phonemes, durations, first, prompt_tokens))
        return parts

    def __call__(self, rows: Sequence[dict]) -> dict[str, torch.Tensor]:
        space, spec = self.config.token_space, self.config.layout_spec
        joined = self._joined(rows, random.Random(self.seed))
        built = [build_gar_sequence(p, d, c, space, spec) for p, d, c, _ in joined]
        length = max(len(b.input_ids) for b in built)
        ids = torch.full((len(rows), length), space.PAD, dtype=torch.long)
        labels = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        for i, b in enumerate(built):
            n = len(b.input_ids)
            ids[i, :n] = torch.tensor(b.input_ids)
            labels[i, :n] = torch.tensor(b.labels)
            labels[i, : joined[i][3]] = IGNORE_INDEX
            mask[i, :n] = 1
        if self.text_dropout:
            rng = random.Random(f"text-dropout-{self.seed}")
            for i in range(len(rows)):
                if rng.random() < self.text_dropout:
                    ids[i] = space.without_text(ids[i])  # attention_mask stays 1: an empty, visible token
        if self.input_noise:
            generator = torch.Generator().manual_seed(random.Random(f"input-noise-{self.seed}").getrandbits(63))
            acoustic = space.acoustic_mask(ids) & mask.bool()  # [B, L]
            pool = ids[acoustic]  # [N] the batch's acoustic tokens
            hit = acoustic & (torch.rand(ids.shape, generator=generator) < self.input_noise)
            if hit.any():  # (a batch without acoustic tokens has nothing to draw from or swap)
                ids[hit] = pool[torch.randint(pool.numel(), (int(hit.sum()),), generator=generator)]
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


@dataclass
class NarCollator:
    """Rows -> NAR inputs: phoneme prefix, all codebooks, a random codebook index per row in
    ``1..K-1`` and (with ``prompt_probability``) a random acoustic-prompt prefix of up to
    ``max_prompt_fraction`` of the frames, embedded with all codebooks and excluded from the loss.
    With ``config.frame_phonemes`` it adds ``frame_phoneme_ids`` ``[B, T]`` from the rows' durations.

    Args:
        config: The NAR configuration.
        prompt_probability: Chance that a row gets an acoustic prompt.
        max_prompt_fraction: Longest prompt as a fraction of the row's frames.
        seed: Seed of the collator's own generator (``None`` = from ``random``).
    """

    config: EllaVNARConfig
    prompt_probability: float = 0.5
    max_prompt_fraction: float = 0.5
    seed: int | None = None

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def __call__(self, rows: Sequence[dict]) -> dict[str, torch.Tensor]:
        space = self.config.token_space
        k = self.config.num_codebooks
        phonemes = max(len(r["phoneme_ids"]) for r in rows)
        frames = max(len(r["codes"][0]) for r in rows)
        phoneme_ids = torch.full((len(rows), phonemes), space.PAD, dtype=torch.long)
        phoneme_mask = torch.zeros((len(rows), phonemes), dtype=torch.long)
        codes = torch.zeros((len(rows), k, frames), dtype=torch.long)
        codes_mask = torch.zeros((len(rows), frames), dtype=torch.long)
        index = torch.zeros(len(rows), dtype=torch.long)
        prompt = torch.zeros(len(rows), dtype=torch.long)
        labels = torch.full((len(rows), frames), IGNORE_INDEX, dtype=torch.long)
        aligned = torch.full((len(rows), frames), space.PAD, dtype=torch.long)
        for i, r in enumerate(rows):
            row_codes = torch.tensor(r["codes"], dtype=torch.long)  # [K, T]
            if row_codes.shape[0] != k:
                raise ValueError(f"Row has {row_codes.shape[0]} codebooks but the NAR expects {k}")
            n, t = len(r["phoneme_ids"]), row_codes.shape[1]
            phoneme_ids[i, :n] = space.phoneme_tensor(r["phoneme_ids"])
            phoneme_mask[i, :n] = 1
            codes[i, :, :t] = row_codes
            codes_mask[i, :t] = 1
            index[i] = self._rng.randint(1, k - 1)
            if self._rng.random() < self.prompt_probability and t > 2:
                prompt[i] = self._rng.randint(1, max(1, int(t * self.max_prompt_fraction)))
            labels[i, :t] = row_codes[index[i]]
            if self.config.frame_phonemes:
                aligned[i, :t] = torch.tensor(frame_phoneme_ids(r["phoneme_ids"], r["durations"], space, t))
        batch = {
            "phoneme_ids": phoneme_ids,
            "phoneme_attention_mask": phoneme_mask,
            "codes": codes,
            "codes_attention_mask": codes_mask,
            "codebook_index": index,
            "prompt_frames": prompt,
            "labels": labels,
        }
        if self.config.frame_phonemes:
            batch["frame_phoneme_ids"] = aligned
        return batch


def gar_length(row: dict, config: EllaVConfig) -> int:
    """Token length of a row's GAR sequence (without building it)."""
    n, t = len(row["phoneme_ids"]), int(row["num_frames"])
    if config.layout == "vall-e":
        return n + 1 + t + 1
    inline = n if config.inline_phonemes else 0  # in-sequence phoneme tokens
    return (n if config.global_advance else 0) + 1 + inline + n + t + 1
