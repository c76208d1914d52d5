"""ELLA-V decoding rules for the stock ``generate()``: a LogitsProcessor with O(1) state per row.

Rules per row (ELLA-V layout), applied before any temperature/top-k/top-p warper:

- after BOS or EOP the next phoneme of the prefix is forced (after the last one's EOP: EOS);
  without in-sequence phonemes (``inline_phonemes=False``) BOS and each EOP open the next phoneme
  themselves and only the EOS after the last EOP is forced;
- inside a phoneme only acoustic tokens and EOP may be sampled; EOP is forced once the phoneme
  owns ``max_frames_per_phone`` frames (a "cut", counted per row);
- optionally (``eop_quantile=q``) the phoneme's length is decided by the rule instead of by the
  sampler: with ``h_t`` the model's EOP probability at the phoneme's ``t``-th free step (softmax over
  the sampleable tokens), EOP is forced at the first step where the probability that the phoneme
  has ended, ``1 - prod_{i<=t} (1 - h_i)``, reaches ``q``, and is never sampled otherwise. ``q = 0.5``
  gives each phoneme the median length of the model's duration distribution: greedy decoding over
  the structure (end or continue), then over the codes. Plain greedy decoding instead compares EOP
  with each single acoustic code, and so lets phonemes run to the cap;
- phonemes, BOS and PAD are never sampled freely; finished rows only get PAD.

VALL-E layout: after BOS only acoustic tokens and EOS may be sampled (EOS is sampled, not
forced), so the baseline can fail the way it does in the paper.

The state of each row is initialised from the prompt with the layout rule's parser
(:func:`~.sequence_layout.parse_gar_sequence`) and then updated from the last token only. A call
whose ``input_ids`` do not extend the previous call's by exactly one token starts a new
generation (the state is rebuilt), so one processor can serve several ``generate()`` calls.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from transformers import GenerationConfig, LogitsProcessor

from . import decoding_options as table
from .decoding_options import check_eop_quantile
from .sequence_layout import LayoutSpec, TokenSpace, parse_gar_sequence
from .transformers_compat import default_generation_params, sampling_warpers


class EllaVPhonemeAdvanceLogitsProcessor(LogitsProcessor):
    """Enforce the ELLA-V (or VALL-E) sequence structure during ``generate()``.

    Args:
        space: The model's token space (``config.token_space``).
        spec: The model's layout (``config.layout_spec``).
        max_frames_per_phone: Frame cap per phoneme (``config.max_frames_per_phone``).
        phonemes: Per row, the phoneme indices to speak (prompt's and target's). Needed when the
            layout has no global advance (no phoneme prefix to read them from); otherwise they
            come from each row's prefix.
        acoustic_codes: Only the first ``acoustic_codes`` first-codebook codes may be sampled
            (``None``: all ``space.codebook_size``): for a codec whose first codebook uses fewer
            codes than the GAR's vocabulary (the learned codec's ``first_codebook_size``), whose
            other codes would decode to nothing.
        eop_quantile: ``None`` (the paper): EOP is sampled (or picked by greedy decoding) like any
            token. A value in ``(0, 1)``: EOP is forced once the probability that the phoneme has
            ended, accumulated from the model's EOP probabilities along the generated path,
            reaches it (``0.5``: the median length), and is masked before; the frame cap still holds.

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
        self,
        space: TokenSpace,
        spec: LayoutSpec,
        max_frames_per_phone: int,
        phonemes: list[list[int]] | None = None,
        acoustic_codes: int | None = None,
        eop_quantile: float | None = None,
    ) -> None:
        if max_frames_per_phone < 1:
            raise ValueError(f"max_frames_per_phone must be >= 1, got {max_frames_per_phone}")
        if acoustic_codes is not None and not 1 <= acoustic_codes <= space.codebook_size:
            raise ValueError(f"acoustic_codes must lie in [1, codebook_size={space.codebook_size}], got {acoustic_codes}")
        check_eop_quantile(eop_quantile)
        if eop_quantile is not None and not spec.interleaved:
            raise ValueError("eop_quantile decides where EOP goes; the VALL-E layout has no EOP.")
        if spec.interleaved and not spec.global_advance and phonemes is None:
            raise ValueError("Without global advance the sequence carries no phoneme prefix: pass phonemes=[[...], ...].")
        self.space = space
        self.spec = spec
        self.cap = int(max_frames_per_phone)
        self.phonemes = phonemes
        self.acoustic_codes = space.codebook_size if acoustic_codes is None else int(acoustic_codes)
        self.eop_quantile = None if eop_quantile is None else float(eop_quantile)
        self._previous: torch.LongTensor | None = None  # [B, L] input_ids of the last call

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
        # Probability that the open phoneme goes on (``eop_quantile``); a prompt's open phoneme starts at 1.
        self.survival = torch.ones(len(rows), dtype=torch.float32, device=device)  # [B]

    def _continues(self, input_ids: torch.LongTensor) -> bool:
        """Whether ``input_ids`` ``[B, L]`` is the previous call's ``[B, L-1]`` plus one token."""
        previous = self._previous
        return (
            previous is not None
            and input_ids.shape[0] == previous.shape[0]
            and input_ids.shape[1] == previous.shape[1] + 1
            and input_ids.device == previous.device
            and torch.equal(input_ids[:, :-1], previous)
        )

    def _update(self, token: torch.LongTensor) -> None:
        """O(1) state update with the last generated token ``[B]``. Every state tensor is replaced,
        never written in place, so a shallow copy of the state is a snapshot (``forced_continuation``)."""
        space = self.space
        was_forced_cut = (token == space.EOP) & self.in_phone & (self.frames_in_phone >= self.cap)
        self.cuts = self.cuts + was_forced_cut.long()
        is_phoneme = space.phoneme_mask(token)
        is_acoustic = space.acoustic_mask(token)
        self.frames = self.frames + is_acoustic.long()
        if self.spec.interleaved and not self.spec.inline_phonemes:
            # An EOP closes the phoneme and opens the next one, if any, without a phoneme token.
            is_eop = (token == space.EOP) & ~self.done
            opens = is_eop & (self.opened < self.num_phonemes)
            self.opened = self.opened + opens.long()
            self.frames_in_phone = torch.where(is_eop, 0, self.frames_in_phone + is_acoustic.long())
            self.in_phone = torch.where(is_eop, opens, self.in_phone)
            opened_now = is_eop
        else:
            self.opened = self.opened + is_phoneme.long()
            self.frames_in_phone = torch.where(is_phoneme, 0, self.frames_in_phone + is_acoustic.long())
            self.in_phone = (self.in_phone | is_phoneme) & (token != space.EOP)
            opened_now = is_phoneme
        self.survival = torch.where(opened_now, torch.ones_like(self.survival), self.survival)
        self.done = self.done | (token == space.EOS)

    def _masks(self, vocab: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Token ids ``[V]``, the freely sampleable ones ``[V]`` (the first ``acoustic_codes``
        acoustic codes + EOP for ELLA-V, + EOS for VALL-E) and those without EOP ``[V]`` (what may be
        sampled inside a phoneme under ``eop_quantile``), built once per vocabulary size and device."""
        key = (vocab, device)
        if getattr(self, "_mask_key", None) != key:
            ids = torch.arange(vocab, device=device)
            acoustic = (ids >= self.space.acoustic_offset) & (ids < self.space.acoustic_offset + self.acoustic_codes)
            closing = self.space.EOP if self.spec.interleaved else self.space.EOS
            self._mask_cache = (ids, acoustic | (ids == closing), acoustic)
            self._mask_key = key
        return self._mask_cache

    # -- the rule ---------------------------------------------------------------------------------
    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """``input_ids`` ``[B, L]``, ``scores`` ``[B, V]`` -> masked scores ``[B, V]``."""
        if self._continues(input_ids):
            self._update(input_ids[:, -1])
        else:  # a new generation (or another prompt): rebuild the state
            self.reset(input_ids)
        self._previous = input_ids
        space = self.space
        ids, free_mask, acoustic_mask = self._masks(scores.shape[-1], scores.device)  # [V] each
        neg = torch.finfo(scores.dtype).min
        allowed = torch.zeros_like(scores, dtype=torch.bool)  # [B, V]
        forced = torch.full((scores.shape[0],), -1, dtype=torch.long, device=scores.device)

        if self.spec.interleaved:
            forced, close = self._forced_by_state()
            free = self.in_phone & ~close & ~self.done
            if self.eop_quantile is not None:
                ends = self._quantile_ends(scores, free_mask, free)  # [B] the phoneme's length is reached
                free = free & ~ends
                forced = torch.where(ends, torch.full_like(forced, space.EOP), forced)
                free_mask = acoustic_mask  # the rule alone places EOP
        else:
            free = ~self.done
        allowed |= free[:, None] & free_mask[None]
        forced = torch.where(self.done, torch.full_like(forced, space.PAD), forced)
        has_forced = forced >= 0
        allowed |= has_forced[:, None] & (ids[None] == forced[:, None])
        return scores.masked_fill(~allowed, neg)

    def _forced_by_state(self) -> tuple[torch.LongTensor, torch.Tensor]:
        """What the interleaved layout forces from the state alone (no scores): per row ``[B]``, the
        forced token (the next phoneme, or EOS after the last, after BOS / EOP; EOP at the frame cap;
        -1 for none) and whether the open phoneme is closed at the cap."""
        space = self.space
        forced = torch.full_like(self.opened, -1)
        need_phoneme = ~self.in_phone & ~self.done  # after BOS / EOP
        has_next = self.opened < self.num_phonemes
        next_phoneme = self.prefix.gather(1, self.opened.clamp(max=self.prefix.shape[1] - 1)[:, None])[:, 0]
        forced = torch.where(need_phoneme & has_next, next_phoneme, forced)
        forced = torch.where(need_phoneme & ~has_next, torch.full_like(forced, space.EOS), forced)
        close = self.in_phone & (self.frames_in_phone >= self.cap) & ~self.done  # [B] at the cap
        return torch.where(close, torch.full_like(forced, space.EOP), forced), close

    def forced_continuation(self, input_ids: torch.LongTensor, max_tokens: int = 2) -> list[int]:
        """The tokens this rule will force right after ``input_ids`` ``[1, L]``, whatever the scores.

        After BOS or an EOP: the next phoneme (or EOS after the last one); after the frame cap's
        last frame: EOP, then the next phoneme. Empty when the next token is drawn (or for the
        VALL-E layout, or more than one row). The rule's state is left as it was: the next
        ``__call__`` sees ``input_ids`` as usual. This is what
        :class:`~.jump_forward.ForcedTokenCandidates` proposes for ``jump_forward`` decoding.
        """
        if input_ids.shape[0] != 1 or not self.spec.interleaved:
            return []
        continues = self._continues(input_ids)
        last = int(input_ids[0, -1])
        if continues and self.space.is_acoustic(last) and int(self.frames_in_phone[0]) + 1 < self.cap:
            return []  # a frame below the cap: the next token is drawn (the common case, without a state copy)
        saved = dict(self.__dict__)  # a snapshot: reset() and _update() replace state tensors, never edit them
        try:
            if continues:
                self._update(input_ids[:, -1])
            else:
                self.reset(input_ids)
            tokens: list[int] = []
            while len(tokens) < max_tokens and not bool(self.done[0]):
                forced, _ = self._forced_by_state()
                if int(forced[0]) < 0:
                    break
                tokens.append(int(forced[0]))
                self._update(forced)
            return tokens
        finally:
            self.__dict__.clear()
            self.__dict__.update(saved)

    def _quantile_ends(self, scores: torch.FloatTensor, free_mask: torch.Tensor, free: torch.Tensor) -> torch.Tensor:
        """Rows ``[B]`` whose open phoneme ends now under ``eop_quantile``; updates ``survival``.

        ``scores`` ``[B, V]`` (as given to the processor), ``free_mask`` ``[V]`` the sampleable tokens
        (acoustic codes and EOP), ``free`` ``[B]`` the rows inside a phoneme below the cap.
        """
        logits = scores.float().masked_fill(~free_mask[None], float("-inf"))  # [B, V]
        hazard = torch.softmax(logits, dim=-1)[:, self.space.EOP].nan_to_num(0.0)  # [B] P(EOP now | not yet)
        survival = self.survival * (1.0 - hazard)  # [B] P(the phoneme goes on after this step)
        ends = free & (1.0 - survival >= self.eop_quantile)
        # A row that continues emits an acoustic token: its phoneme survived this step.
        self.survival = torch.where(free & ~ends, survival, self.survival)
        return ends


#: GenerationConfig fields that EllaVForTextToSpeech passes to its GAR's stock ``generate()``.
GAR_GENERATION_FIELDS = (
    "do_sample", "temperature", "top_k", "top_p", "min_p", "top_h", "typical_p", "epsilon_cutoff", "eta_cutoff",
    "repetition_penalty", "use_cache", "cache_implementation", "cache_config", "compile_config", "disable_compile",
)
#: Fields the TTS model reads itself or that do not change its output (token ids are the GAR's own);
#: every option of the decoding table (``decoding_options.py``) is handled too.
HANDLED_GENERATION_FIELDS = (
    "max_new_tokens", "num_return_sequences", "pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id",
    "return_dict_in_generate", "transformers_version",
)


class EllaVFirstLevelRecorder(LogitsProcessor):
    """Records, at every GAR step, the distribution the step's first-codebook code is drawn from.

    For ``first_level_decoding="expected"``: the codec then decodes each generated frame from its
    expected first-level vector ``sum_c p(c) e_c`` under this distribution instead of from the drawn
    code's vector alone, as ``nar_decoding="expected"`` does for codebooks 2..K. The drawn codes still
    drive the GAR, the phoneme structure and the NAR; only the first level's rendering changes.

    Placed last among ``generate()``'s custom processors (after guidance and the phoneme-advance
    rule), it passes the scores through unchanged and applies, to them, the sampling warpers that
    the stock ``generate()`` appends after the custom processors (:func:`sampling_warpers`); the
    recorded distribution is the warped one restricted to the acoustic tokens (a frame's code is
    drawn on the condition that the step is acoustic), ``[B, C_1]`` per step, zero on steps where
    no acoustic token may be drawn. Greedy decoding draws each code from a point mass, so it has
    nothing to record (``ValueError``). Like :class:`EllaVPhonemeAdvanceLogitsProcessor`, a call
    whose ``input_ids`` do not extend the previous call's by one token starts a new generation.

    Args:
        space: The GAR's token space.
        codes: First-level codes the codec decodes (``C_1``; acoustic tokens beyond them are never
            drawn).
        generation_config: The GAR's stock generation config (its sampling fields).
    """

    def __init__(self, space: TokenSpace, codes: int, generation_config: GenerationConfig) -> None:
        if not generation_config.do_sample:
            raise ValueError("first_level_decoding='expected' needs sampling: greedy decoding draws each code from a point mass.")
        if not 1 <= codes <= space.codebook_size:
            raise ValueError(f"codes must be in [1, {space.codebook_size}], got {codes}")
        self.space, self.offset, self.codes = space, space.acoustic_offset, int(codes)
        self.generation_config = generation_config
        self.warpers: list[LogitsProcessor] | None = None
        self.steps: list[torch.Tensor] = []  # [B, C_1] per generated token
        self.start: int | None = None  # input length of the generation's first call

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        # input_ids [B, L]; scores [B, V] (after guidance and the phoneme-advance rule)
        if self.start is None or input_ids.shape[1] != self.start + len(self.steps):
            self.start, self.steps = input_ids.shape[1], []
        if self.warpers is None:
            self.warpers = sampling_warpers(self.generation_config, scores.device)
        warped = scores.clone()
        for warper in self.warpers:
            warped = warper(input_ids, warped)
        acoustic = warped[:, self.offset : self.offset + self.codes].float()  # [B, C_1]
        drawable = torch.isfinite(acoustic).any(-1, keepdim=True)  # [B, 1]
        self.steps.append(torch.where(drawable, acoustic.softmax(-1), torch.zeros_like(acoustic)))
        return scores

    def frame_probabilities(self, row: int, generated: list[int]) -> torch.Tensor:
        """``[T, C_1]``: the distributions of ``row``'s generated acoustic frames, in order.

        Args:
            row: The batch row.
            generated: The row's generated tokens so far (the prompt excluded), each drawn at the
                recorded step of the same index.
        """
        if len(generated) > len(self.steps):
            raise ValueError(f"{len(generated)} generated tokens but {len(self.steps)} recorded steps")
        rows = [self.steps[i][row] for i, token in enumerate(generated) if self.space.is_acoustic(token)]
        if not rows:
            return torch.zeros(0, self.codes)
        return torch.stack(rows)


class EllaVGenerationConfig(GenerationConfig):
    """Decoding defaults of :class:`~.modeling_ella_v_tts.EllaVForTextToSpeech` (its ``generation_config.json``).

    The stock sampling fields (``do_sample``, ``temperature``, ``top_k``, ``top_p``, ``min_p``,
    ``typical_p``, ``repetition_penalty``, ``use_cache``, ``cache_implementation``, ``compile_config``…)
    go to the GAR's stock ``generate()``; the NAR picks each codebook's most likely codes (the
    returned ``codes``), and ``nar_decoding`` says which vectors the codec decodes.
    ``max_new_tokens`` caps the GAR tokens generated per row (the phoneme count bounds them
    anyway); ``num_return_sequences`` returns that many samples per input row. Anything else that
    changes decoding (beam search, contrastive search, assisted decoding, ``min_new_tokens``,
    ``max_length``, …) is refused by ``generate()`` with a ``ValueError``, since the forced phoneme
    structure cannot honour it.

    Args:
        max_frames_per_phone: ELLA-V's frame cap per phoneme (EOP is forced beyond it); ``None``:
            the GAR configuration's ``max_frames_per_phone`` (0.4 s, the paper's value).
        vall_e_max_frames_per_phone: VALL-E decoding stops after this many frames per target
            phoneme on average (rows that get there count as infinite); ``None``: the model config's.
        sentence_pause_seconds: Silence between the sentences of a long text in
            :func:`ella_v_hf.synthesis.synthesize`; ``None``: the model config's.
        nar_decoding: ``"expected"`` (``None``, the default, means this): the codec decodes
            codebooks 2..K from their expected code vectors under the NAR's distributions (the
            minimum-mean-square-error latent: an unsure deep level shrinks towards its codebook's
            mean instead of adding a wrong code's vector); ``"argmax"``: from the NAR's most likely
            codes, as VALL-E does. The returned ``codes`` are the argmax codes either way.
        first_level_decoding: ``"code"`` (``None``, the default, means this): the codec decodes each
            generated frame's first level from the drawn code's vector. ``"expected"``: from its
            expected vector under the distribution the code was drawn from (after guidance, the
            phoneme-advance rule and the sampling warpers such as ``top_p``;
            :class:`EllaVFirstLevelRecorder`), which keeps what the draw decided (phoneme lengths,
            the path of the GAR and the NAR's input) and averages out which of the likely codes it
            was. Greedy decoding draws from a point mass, so it decodes the code either way. The
            returned ``codes`` are the drawn codes; the distributions are in the output's
            ``first_code_probabilities``.
        eop_quantile: ``None`` (the default, the paper): EOP is sampled, or picked by greedy
            decoding, like any token. A value ``q`` in ``(0, 1)``: each phoneme ends where the
            probability that it has ended (from the GAR's EOP probabilities along the path) first
            reaches ``q`` (``0.5``: its median length), see
            :class:`EllaVPhonemeAdvanceLogitsProcessor`. The VALL-E layout has no EOP and ignores it.
        guidance_scale: (a stock field) ``None`` or ``1``: no guidance. A value ``w > 0``: classifier-free
            guidance on the text, ``log p_u + w (log p_c - log p_u)`` with ``p_u`` the GAR's
            distribution without the phonemes (the text-free copies run as ``B`` more rows of the same
            GAR forward, which combines them, ``text_free_guidance``). Needs a GAR trained with
            ``text_dropout`` (not in the paper).
        jump_forward: ``True``: a one-row generation (one text, ``num_return_sequences=1``, no
            static cache) decodes each token the phoneme-advance rule forces (the phoneme after an
            EOP, EOS, EOP at the frame cap) in the same GAR forward as the token before it, through
            the stock assisted-decoding loop (:mod:`~ella_v_hf.modeling.jump_forward`): the same
            structure and distributions in fewer steps (sampled sequences differ from step-by-step
            decoding's for the same seed). It relies on transformers' private assisted-decoding
            hooks, so it is opt-in: on a transformers release it was not verified on it warns once
            and decodes step by step. ``None`` (the default) or ``False``: one token per step. The
            VALL-E layout forces nothing and always decodes one token per step.
        kwargs: :class:`~transformers.GenerationConfig` fields. Unset, ``do_sample=True``,
            ``top_p=0.9``, ``top_k=0`` and ``temperature=1.0`` (the paper samples the GAR).
    """

    def __init__(self, **kwargs: Any) -> None:
        for option in table.DECODING_OPTIONS:  # the ELLA-V fields of the decoding table, None when unset
            if option.own:
                setattr(self, option.name, kwargs.pop(option.name, None))
        for key, value in (("do_sample", True), ("top_p", 0.9), ("top_k", 0), ("temperature", 1.0)):
            kwargs.setdefault(key, value)
        super().__init__(**kwargs)

    @classmethod
    def from_model_config(cls, model_config: Any) -> EllaVGenerationConfig:
        """Defaults for an ``EllaVTTSConfig``: its frame caps and pause, and ``max_new_tokens`` = the
        GAR's ``max_position_embeddings`` (so callers such as the text-to-audio pipeline do not
        impose their own short default)."""
        gar = getattr(model_config, "gar_config", None)
        if gar is None:
            return cls()
        return cls(
            max_frames_per_phone=gar.max_frames_per_phone,
            vall_e_max_frames_per_phone=getattr(model_config, "vall_e_max_frames_per_phone", None),
            sentence_pause_seconds=getattr(model_config, "sentence_pause_seconds", None),
            max_new_tokens=gar.max_position_embeddings,
        )

    def check_supported(self) -> None:
        """Raise a ``ValueError`` naming every set field the TTS model cannot honour, and every
        out-of-range sampling value."""
        defaults = default_generation_params()
        handled = {*GAR_GENERATION_FIELDS, *HANDLED_GENERATION_FIELDS, *(o.name for o in table.DECODING_OPTIONS)}
        unsupported = []
        for key, value in self.to_dict().items():
            if key in handled or key.startswith("_"):
                continue
            if value is None or (key in defaults and value == defaults[key]):
                continue
            unsupported.append(f"{key}={value!r}")
        if unsupported:
            raise ValueError(
                f"EllaVForTextToSpeech.generate() does not support {', '.join(unsupported)}: the GAR samples (or greedily "
                "picks) one token at a time under the forced phoneme structure. Supported: "
                f"{', '.join(dict.fromkeys([*GAR_GENERATION_FIELDS, 'max_new_tokens', 'num_return_sequences', *(o.name for o in table.DECODING_OPTIONS)]))}."
            )
        for option in table.DECODING_OPTIONS:  # each option's own range check
            if option.check is not None and (self.do_sample or not option.sampling):
                option.check(getattr(self, option.name, None))
        for key in ("max_new_tokens", "num_return_sequences"):
            value = getattr(self, key, None)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{key} must be a positive integer, got {value!r}")

    def gar_generation_config(self, **overrides: Any) -> GenerationConfig:
        """The stock :class:`~transformers.GenerationConfig` for the GAR: the pass-through fields plus ``overrides``."""
        values = {key: getattr(self, key, None) for key in GAR_GENERATION_FIELDS}
        values = {key: value for key, value in values.items() if value is not None}
        if not values.get("do_sample"):
            for key in ("temperature", "top_k", "top_p", "min_p", "top_h", "typical_p", "epsilon_cutoff", "eta_cutoff"):
                values.pop(key, None)  # greedy: sampling knobs would only draw warnings
        return GenerationConfig(**values, **overrides)


def merge_generation_config(
    model_config: GenerationConfig, call_config: GenerationConfig | None, kwargs: dict[str, Any]
) -> tuple[EllaVGenerationConfig, dict[str, Any]]:
    """Merge the standard way: call kwargs > the call's ``generation_config`` > the model's.

    Returns:
        ``(config, unused)``: an :class:`EllaVGenerationConfig` and the kwargs that are not
        generation fields.
    """
    config = EllaVGenerationConfig.from_dict(copy.deepcopy(call_config.to_dict())) if call_config is not None else None
    model_values = model_config.to_dict()
    if config is None:
        config = EllaVGenerationConfig.from_dict(copy.deepcopy(model_values))
    else:
        config.update(**model_values, defaults_only=True, allow_custom_entries=True)
    unused = config.update(**kwargs)
    return config, unused


__all__ = [
    "EllaVFirstLevelRecorder",
    "EllaVGenerationConfig",
    "EllaVPhonemeAdvanceLogitsProcessor",
    "merge_generation_config",
    "sampling_warpers",
]
