"""ELLA-V decoding rules for the stock ``generate()``: a LogitsProcessor with O(1) state per row.

Rules per row (ELLA-V layout), applied before any temperature/top-k/top-p warper:

- after BOS or EOP the next phoneme of the prefix is forced (after the last one's EOP: EOS);
- inside a phoneme only acoustic tokens and EOP may be sampled; EOP is forced once the phoneme
  owns ``max_frames_per_phone`` frames (a "cut", counted per row);
- phonemes, BOS and PAD are never sampled freely; finished rows only get PAD.

VALL-E layout: after BOS only acoustic tokens and EOS may be sampled (EOS is sampled, not
forced), so the baseline can fail the way it does in the paper.

The state of each row is initialised once from the prompt with the layout rule's parser
(:func:`~.sequence_layout.parse_gar_sequence`) and then updated from the last token only.
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor

from .sequence_layout import LayoutSpec, TokenSpace, parse_gar_sequence


class EllaVPhonemeAdvanceLogitsProcessor(LogitsProcessor):
    """Enforce the ELLA-V (or VALL-E) sequence structure during ``generate()``.

    Args:
        space: The model's token space (``config.token_space``).
        spec: The model's layout (``config.layout_spec``).
        max_frames_per_phone: Frame cap per phoneme (``config.max_frames_per_phone``).
        phonemes: Per row, the phoneme indices to speak (prompt's and target's). Needed when the
            layout has no global advance (no phoneme prefix to read them from); otherwise they
            come from each row's prefix.

    Attributes:
        cuts: ``[B]`` EOPs forced by the frame cap, per row (after generation).
        frames: ``[B]`` acoustic frames generated per row (prompt frames excluded).

    Example:

    ```python
    >>> from transformers import LogitsProcessorList
    >>> processor = EllaVPhonemeAdvanceLogitsProcessor(model.config.token_space, model.config.layout_spec, 30)  # doctest: +SKIP
    >>> out = model.generate(prompt_ids, logits_processor=LogitsProcessorList([processor]), do_sample=True)  # doctest: +SKIP
    >>> processor.cuts  # doctest: +SKIP
    ```
    """

    def __init__(
        self, space: TokenSpace, spec: LayoutSpec, max_frames_per_phone: int, phonemes: list[list[int]] | None = None
    ) -> None:
        if max_frames_per_phone < 1:
            raise ValueError(f"max_frames_per_phone must be >= 1, got {max_frames_per_phone}")
        if spec.interleaved and not spec.global_advance and phonemes is None:
            raise ValueError("Without global advance the sequence carries no phoneme prefix: pass phonemes=[[...], ...].")
        self.space = space
        self.spec = spec
        self.cap = int(max_frames_per_phone)
        self.phonemes = phonemes
        self._length = -1  # length of the input_ids seen at the last call

    # -- state ----------------------------------------------------------------------------------
    def reset(self, input_ids: torch.LongTensor) -> None:
        """Initialise the per-row state from the (left-padded) prompts ``[B, L]`` with the layout parser."""
        rows = input_ids.tolist()
        device = input_ids.device
        parsed = [parse_gar_sequence(row, self.space, self.spec) for row in rows]
        for i, p in enumerate(parsed):
            if self.space.BOS not in rows[i]:
                raise ValueError(f"Row {i} has no BOS; generation continues a sequence that starts with BOS.")
            if not p.prefix_phonemes and self.spec.global_advance:
                raise ValueError(f"Row {i} has no phoneme prefix; build prompts with build_gar_sequence.")
        if self.phonemes is not None:
            if len(self.phonemes) != len(rows):
                raise ValueError(f"phonemes has {len(self.phonemes)} rows but the batch has {len(rows)}")
            to_speak = [list(map(int, p)) for p in self.phonemes]
            for i, (p, spoken) in enumerate(zip(parsed, to_speak)):
                if spoken[: len(p.phonemes)] != p.phonemes:
                    raise ValueError(f"Row {i}: the prompt's phonemes {p.phonemes} do not start the given phonemes")
        else:
            to_speak = [p.prefix_phonemes for p in parsed]
        width = max(1, max(len(p) for p in to_speak))
        prefix = torch.full((len(rows), width), self.space.PAD, dtype=torch.long)
        for i, p in enumerate(to_speak):
            prefix[i, : len(p)] = self.space.phoneme_tensor(p)
        self.prefix = prefix.to(device)  # [B, N] flat phoneme ids to force, in order
        self.num_phonemes = torch.tensor([len(p) for p in to_speak], device=device)  # [B]
        self.opened = torch.tensor([len(p.phonemes) for p in parsed], device=device)  # phoneme tokens emitted
        self.in_phone = torch.tensor([len(p.phonemes) > p.closed_phonemes for p in parsed], device=device)
        last_frames = [p.frame_counts[-1] if p.frame_counts and len(p.phonemes) > p.closed_phonemes else 0 for p in parsed]
        self.frames_in_phone = torch.tensor(last_frames, device=device)
        self.done = torch.tensor([p.complete for p in parsed], device=device)
        self.cuts = torch.zeros(len(rows), dtype=torch.long, device=device)
        self.frames = torch.zeros(len(rows), dtype=torch.long, device=device)
        self._length = input_ids.shape[1]

    def _update(self, token: torch.LongTensor) -> None:
        """O(1) state update with the last generated token ``[B]``."""
        space = self.space
        was_forced_cut = (token == space.EOP) & self.in_phone & (self.frames_in_phone >= self.cap)
        self.cuts += was_forced_cut.long()
        is_phoneme = space.phoneme_mask(token)
        is_acoustic = space.acoustic_mask(token)
        self.opened += is_phoneme.long()
        self.frames_in_phone = torch.where(is_phoneme, 0, self.frames_in_phone + is_acoustic.long())
        self.frames += is_acoustic.long()
        self.in_phone = (self.in_phone | is_phoneme) & (token != space.EOP)
        self.done |= token == space.EOS

    def _masks(self, vocab: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids ``[V]`` and the freely sampleable ones ``[V]`` (acoustic + EOP for ELLA-V,
        acoustic + EOS for VALL-E), built once per vocabulary size and device."""
        key = (vocab, device)
        if getattr(self, "_mask_key", None) != key:
            ids = torch.arange(vocab, device=device)
            acoustic = (ids >= self.space.acoustic_offset) & (ids < self.space.vocab_size)
            closing = self.space.EOP if self.spec.interleaved else self.space.EOS
            self._mask_cache = (ids, acoustic | (ids == closing))
            self._mask_key = key
        return self._mask_cache

    # -- the rule ---------------------------------------------------------------------------------
    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """``input_ids`` ``[B, L]``, ``scores`` ``[B, V]`` -> masked scores ``[B, V]``."""
        if input_ids.shape[1] != self._length + 1 or self._length < 0:
            self.reset(input_ids)
        else:
            self._update(input_ids[:, -1])
            self._length = input_ids.shape[1]
        space = self.space
        ids, free_mask = self._masks(scores.shape[-1], scores.device)  # [V], [V]
        neg = torch.finfo(scores.dtype).min
        allowed = torch.zeros_like(scores, dtype=torch.bool)  # [B, V]
        forced = torch.full((scores.shape[0],), -1, dtype=torch.long, device=scores.device)

        if self.spec.interleaved:
            need_phoneme = ~self.in_phone & ~self.done  # after BOS / EOP
            has_next = self.opened < self.num_phonemes
            next_phoneme = self.prefix.gather(1, self.opened.clamp(max=self.prefix.shape[1] - 1)[:, None])[:, 0]
            forced = torch.where(need_phoneme & has_next, next_phoneme, forced)
            forced = torch.where(need_phoneme & ~has_next, torch.full_like(forced, space.EOS), forced)
            at_cap = self.in_phone & (self.frames_in_phone >= self.cap) & ~self.done
            forced = torch.where(at_cap, torch.full_like(forced, space.EOP), forced)
            free = self.in_phone & ~at_cap & ~self.done
        else:
            free = ~self.done
        allowed |= free[:, None] & free_mask[None]
        forced = torch.where(self.done, torch.full_like(forced, space.PAD), forced)
        has_forced = forced >= 0
        allowed |= has_forced[:, None] & (ids[None] == forced[:, None])
        return scores.masked_fill(~allowed, neg)


__all__ = ["EllaVPhonemeAdvanceLogitsProcessor"]
