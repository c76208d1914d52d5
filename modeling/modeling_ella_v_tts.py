"""EllaVForTextToSpeech: GAR + NAR + codec in one PreTrainedModel whose ``generate()`` returns
waveforms, so ``pipeline("text-to-speech", model=dir)`` works and one directory goes to the Hub."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForTextToWaveform,
    GenerationConfig,
    LogitsProcessorList,
    PreTrainedConfig,
    StoppingCriteriaList,
)
from transformers.configuration_utils import SubConfigSpec
from transformers.utils import ModelOutput

from .aligner_ella_v import AlignmentError
from .configuration_ella_v import EllaVConfig, EllaVNARConfig
from .generation_ella_v import (
    EllaVFirstLevelRecorder,
    EllaVGenerationConfig,
    EllaVPhonemeAdvanceLogitsProcessor,
    merge_generation_config,
)
from .modeling_ella_v import EllaVForCausalLM, EllaVNARModel, EllaVPreTrainedModel
from .registry import CODECS  # noqa: F401  (importing it registers the codecs and the aligner with the Auto classes)
from .sequence_layout import (
    ParsedGarSequence,
    TokenSpace,
    build_gar_sequence,
    frame_phoneme_ids,
    parse_gar_sequence,
    sequence_to_alignment_durations,
)
from .streaming_ella_v import EllaVAudioStreamer, GarTokenWatcher
from .transformers_compat import adjust_generation_arguments

#: GAR tokens one phoneme token takes on average in English speech at 50 Hz (itself, its EOP and
#: ~4-5 frames; ELLA-V also repeats it in the prefix): the yardstick of the length check.
EXPECTED_TOKENS_PER_PHONEME = 8
#: Codec fields the GAR and NAR configurations must share with the codec.
CODEC_FIELDS = ("codebook_size", "num_codebooks", "sampling_rate", "frame_rate")


class EllaVTTSConfig(PreTrainedConfig):
    """Configuration of :class:`EllaVForTextToSpeech`: a composite of four sub-configurations.

    Args:
        gar_config: :class:`EllaVConfig` (or its dict); the codec's fields are filled in.
        nar_config: :class:`EllaVNARConfig` (or its dict); the codec's fields are filled in.
        codec_config: Any registered codec configuration (or a dict with ``model_type``; default:
            the learned embedded codec ``ella_v_codec``); the model builds it with ``AutoModel.from_config``.
        aligner_config: The built-in aligner's configuration (optional; needed to use prompt audio).
        vall_e_max_frames_per_phone: VALL-E decoding stops after this many frames per target
            phoneme on average (its rows that get there count as infinite: INF).
        sentence_pause_seconds: Silence inserted between sentences of a long text.
        phoneme_vocab_sha256: Fingerprint of the phoneme vocabulary the model was trained with
            (``EllaVPhonemeTokenizer.vocab_fingerprint()``); checked against the processor on load.
    """

    model_type = "ella_v_tts"
    sub_configs_defaults = {
        "gar_config": EllaVConfig,
        "nar_config": EllaVNARConfig,
        "codec_config": SubConfigSpec(config_class=AutoConfig, model_type="ella_v_codec"),
        "aligner_config": SubConfigSpec(config_class=AutoConfig, model_type="ella_v_aligner", optional=True),
    }

    gar_config: dict | PreTrainedConfig | None = None
    nar_config: dict | PreTrainedConfig | None = None
    codec_config: dict | PreTrainedConfig | None = None
    aligner_config: dict | PreTrainedConfig | None = None
    vall_e_max_frames_per_phone: int | None = None
    sentence_pause_seconds: float = 0.15
    phoneme_vocab_sha256: str | None = None

    def __post_init__(self, **kwargs) -> None:
        spec = self.sub_configs_defaults["codec_config"]
        self.codec_config, kwargs = spec.create_subconfig("codec_config", self.codec_config, **kwargs)
        codec = self.codec_config
        shared = {key: getattr(codec, key) for key in CODEC_FIELDS}
        shared["frame_rate"] = float(shared["frame_rate"])
        for key in ("gar_config", "nar_config"):
            value = getattr(self, key)
            if not isinstance(value, PreTrainedConfig):
                setattr(self, key, {**shared, **(value or {})})
        super().__post_init__(**kwargs)
        for name in ("gar_config", "nar_config"):
            sub = getattr(self, name)
            for key, value in shared.items():
                if getattr(sub, key) != value:
                    raise ValueError(f"{name}.{key} = {getattr(sub, key)} but the codec ({codec.model_type}) has {value}")
        if self.gar_config.num_phonemes != self.nar_config.num_phonemes:
            raise ValueError(
                f"gar_config.num_phonemes ({self.gar_config.num_phonemes}) != nar_config.num_phonemes ({self.nar_config.num_phonemes})"
            )
        if self.nar_config.frame_phonemes and not self.gar_config.layout_spec.interleaved:
            raise ValueError(
                "nar_config.frame_phonemes needs each frame's phoneme at inference, which only the interleaved "
                f"ELLA-V layout provides; this GAR has layout={self.gar_config.layout!r}."
            )
        aligner = self.aligner_config
        if aligner is not None and (aligner.sampling_rate != codec.sampling_rate or abs(aligner.frame_rate - codec.frame_rate) > 1e-6):
            raise ValueError(
                f"The aligner works at {aligner.sampling_rate} Hz / {aligner.frame_rate} frames/s but the codec at "
                f"{codec.sampling_rate} Hz / {codec.frame_rate} frames/s: durations must be in codec frames."
            )
        if self.vall_e_max_frames_per_phone is None:
            self.vall_e_max_frames_per_phone = self.gar_config.max_frames_per_phone

    @property
    def sampling_rate(self) -> int:
        """Output sampling rate (the codec's)."""
        return self.codec_config.sampling_rate

    def check_tokenizer(self, tokenizer) -> None:
        """Refuse a tokenizer whose vocabulary is not the one this model was trained with.

        Raises:
            ValueError: Another size, or (when the fingerprint is recorded) another symbol -> id table.
        """
        if tokenizer.vocab_size != self.gar_config.num_phonemes:
            raise ValueError(
                f"The tokenizer has {tokenizer.vocab_size} phoneme symbols but the model was built for "
                f"num_phonemes={self.gar_config.num_phonemes}; use the processor the model was trained with."
            )
        if self.phoneme_vocab_sha256 and tokenizer.vocab_fingerprint() != self.phoneme_vocab_sha256:
            raise ValueError(
                f"The tokenizer's vocabulary (fingerprint {tokenizer.vocab_fingerprint()}) is not the one the model was "
                f"trained with ({self.phoneme_vocab_sha256}): same size, other symbols or order. Use the processor the model was trained with."
            )

    def to_dict(self) -> dict:
        """As ``PreTrainedConfig.to_dict``, without the sub-configurations' machine-specific
        ``_name_or_path`` and their own ``auto_map`` (the composite's remote code serves them)."""
        output = super().to_dict()
        for key in self.sub_configs:
            if isinstance(output.get(key), dict):
                for private in ("_name_or_path", "auto_map"):
                    output[key].pop(private, None)
        return output


#: The loading arguments of ``from_pretrained`` that ``GenerationConfig.from_pretrained`` takes too.
GENERATION_CONFIG_LOADING = ("cache_dir", "force_download", "proxies", "local_files_only", "token", "revision", "subfolder")


@dataclass
class EllaVTTSOutput(ModelOutput):
    """Output of :meth:`EllaVForTextToSpeech.generate`.

    Args:
        audio: ``[B, S]`` waveforms at ``config.sampling_rate``, zero-padded to the longest.
        audio_lengths: ``[B]`` valid samples per row.
        codes: Per row ``[K, T]`` codec codes of the generated speech (prompt excluded).
        sequences: ``[B, L]`` GAR sequences (prompt + generated; left-padded).
        cuts: ``[B]`` EOPs forced by the frame cap (ELLA-V).
        infinite: ``[B]`` rows that hit the length cap without EOS (VALL-E's failure mode).
        prompt_frames: ``[B]`` codec frames of each row's prompt (0 without one).
        first_code_probabilities: With ``first_level_decoding="expected"`` while sampling, per row
            ``[T, C_1]``: the distribution each generated frame's first-level code was drawn from,
            which the audio's first level was decoded from (``None`` otherwise).
    """

    audio: torch.FloatTensor | None = None
    audio_lengths: torch.LongTensor | None = None
    codes: list[torch.LongTensor] | None = None
    sequences: torch.LongTensor | None = None
    cuts: torch.LongTensor | None = None
    infinite: torch.BoolTensor | None = None
    prompt_frames: torch.LongTensor | None = None
    first_code_probabilities: list[torch.Tensor] | None = None


@dataclass
class FirstCodebook:
    """What :meth:`EllaVForTextToSpeech.generate_first_codebook` hands to :meth:`~EllaVForTextToSpeech.decode_speech`.

    Args:
        sequences: ``[B, L]`` the GAR's sequences (prompt + generated; left-padded).
        prompt_length: ``L0``, the padded prompt length (generated tokens start there).
        cuts: ``[B]`` EOPs forced by the frame cap.
        recorder: The first level's sampling distributions (``first_level_decoding="expected"``), or ``None``.
        watcher: The streaming watcher (its ``codes`` and ``audio`` are the stream), or ``None``.
    """

    sequences: torch.LongTensor
    prompt_length: int
    cuts: torch.LongTensor
    recorder: EllaVFirstLevelRecorder | None = None
    watcher: GarTokenWatcher | None = None


@dataclass
class EllaVTTSTrainingOutput(ModelOutput):
    """Losses of :meth:`EllaVForTextToSpeech.forward`: ``loss = gar_loss + nar_loss``, or with a
    teacher's logits ``(1 - w) gar_loss + w gar_distill_loss + nar_loss`` (``w`` =
    ``gar_distill_weight``; ``gar_loss`` stays the plain cross-entropy, comparable across runs)."""

    loss: torch.FloatTensor | None = None
    gar_loss: torch.FloatTensor | None = None
    nar_loss: torch.FloatTensor | None = None
    gar_distill_loss: torch.FloatTensor | None = None


class EllaVForTextToSpeech(EllaVPreTrainedModel):
    """ELLA-V (or VALL-E) text-to-speech: GAR (first codebook), NAR (codebooks 2..K), codec and,
    optionally, the built-in aligner (to encode and align a prompt's audio).

    ``generate(**processor(text, prompt_audio=…, prompt_text=…))`` returns waveforms. The
    training entry points are the sub-models (``model.gar``, ``model.nar``).
    """

    config_class = EllaVTTSConfig
    generation_config_class = EllaVGenerationConfig
    main_input_name = "input_ids"
    base_model_prefix = "tts"
    _no_split_modules = ["EllaVDecoderLayer"]
    _remote_auto_map = {"AutoModel": "EllaVForTextToSpeech", "AutoModelForTextToWaveform": "EllaVForTextToSpeech"}

    def __init__(self, config: EllaVTTSConfig) -> None:
        super().__init__(config)
        self.gar = EllaVForCausalLM(config.gar_config)
        self.nar = EllaVNARModel(config.nar_config)
        self.codec = AutoModel.from_config(config.codec_config)
        self.aligner = AutoModel.from_config(config.aligner_config) if config.aligner_config is not None else None
        self.post_init()
        self.generation_config = EllaVGenerationConfig.from_model_config(config)

    def _init_weights(self, module) -> None:
        pass  # the sub-models initialise themselves

    @classmethod
    def can_generate(cls) -> bool:
        return True  # generate() is ours (GAR generate + NAR + codec), not GenerationMixin's

    def adjust_generation_fn(self, generation_config, from_auto_class, from_pipeline, pretrained_model_name_or_path, *args, **kwargs) -> None:
        """Called by ``from_pretrained``: load the checkpoint's ``generation_config.json`` as an
        :class:`EllaVGenerationConfig` (fields it lacks come from the model configuration)."""
        defaults = EllaVGenerationConfig.from_model_config(self.config)
        if generation_config is None:
            loading = adjust_generation_arguments(args, kwargs)
            loading = {key: loading[key] for key in GENERATION_CONFIG_LOADING if key in loading}
            try:
                generation_config = GenerationConfig.from_pretrained(pretrained_model_name_or_path, **loading)
            except OSError:
                generation_config = None
        if generation_config is not None:
            defaults.update(**{k: v for k, v in generation_config.to_dict().items() if v is not None}, allow_custom_entries=True)
        self.generation_config = defaults

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,  # [B, L] GAR sequences (GarCollator)
        attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        nar_inputs: dict | None = None,  # EllaVNARModel.forward kwargs (NarCollator)
        gar_teacher_logits: torch.Tensor | None = None,  # [B, L, V] a teacher GAR's logits on input_ids
        gar_distill_weight: float = 0.5,
        **kwargs,
    ) -> EllaVTTSTrainingOutput:
        """Training forward: GAR loss, NAR loss, or both summed (one call, so distributed
        wrappers see every parameter that gets a gradient).

        Args:
            gar_teacher_logits: With ``labels``, mixes token-level distillation from a teacher into
                the GAR's loss (:meth:`EllaVForCausalLM.distillation_loss`).
            gar_distill_weight: The distillation term's weight ``w`` in ``[0, 1]``.
        """
        gar_loss = nar_loss = distill = None
        gar_total = None
        if input_ids is not None:
            out = self.gar(input_ids=input_ids, attention_mask=attention_mask, labels=labels, use_cache=False, **kwargs)
            gar_loss = gar_total = out.loss
            if gar_teacher_logits is not None:
                if labels is None:
                    raise ValueError("gar_teacher_logits needs labels (distillation counts the same targets as the loss).")
                if not 0.0 <= gar_distill_weight <= 1.0:
                    raise ValueError(f"gar_distill_weight must lie in [0, 1], got {gar_distill_weight}")
                distill = self.gar.distillation_loss(out.logits, gar_teacher_logits, labels)
                gar_total = (1.0 - gar_distill_weight) * gar_loss + gar_distill_weight * distill
        if nar_inputs is not None:
            nar_loss = self.nar(**nar_inputs).loss
        parts = [x for x in (gar_total, nar_loss) if x is not None]
        if not parts:
            raise ValueError("Pass GAR inputs (input_ids, labels) and/or nar_inputs.")
        return EllaVTTSTrainingOutput(loss=sum(parts), gar_loss=gar_loss, nar_loss=nar_loss, gar_distill_loss=distill)

    # -- inference ----------------------------------------------------------------------------
    def build_prompts(
        self,
        input_ids: torch.LongTensor,  # [B, L] target phoneme ids (tokenizer ids), right-padded
        attention_mask: torch.Tensor | None = None,
        prompt_input_ids: torch.LongTensor | None = None,  # [B, Lp]
        prompt_attention_mask: torch.Tensor | None = None,
        prompt_durations: torch.LongTensor | None = None,  # [B, Lp] codec frames per prompt token
        prompt_codes: torch.LongTensor | None = None,  # [B, K, Tp]
        prompt_num_frames: torch.LongTensor | None = None,  # [B]
    ) -> tuple[list[list[int]], list[list[int]], list[torch.LongTensor | None]]:
        """GAR prompts (with the layout rule), all phonemes and prompt codes per row."""
        gar = self.config.gar_config
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if prompt_input_ids is not None and (prompt_durations is None or prompt_codes is None):
            raise ValueError("A prompt needs its audio (prompt_input_values) or prompt_durations and prompt_codes.")
        prompts, phonemes, codes = [], [], []
        for b in range(input_ids.shape[0]):
            target = input_ids[b][attention_mask[b].bool()].tolist()
            if any(not 0 <= t < gar.num_phonemes for t in target):
                raise ValueError(f"Row {b}: phoneme ids must lie in [0, {gar.num_phonemes}).")
            durations, first, row_codes, ids = None, None, None, target
            if prompt_input_ids is not None:
                mask = (prompt_attention_mask[b] if prompt_attention_mask is not None else torch.ones_like(prompt_input_ids[b])).bool()
                prompt_ids = prompt_input_ids[b][mask].tolist()
                durations = prompt_durations[b][mask].tolist()
                frames = int(prompt_num_frames[b]) if prompt_num_frames is not None else sum(durations)
                row_codes = prompt_codes[b, :, :frames].long()
                first = row_codes[0].tolist()
                ids = prompt_ids + target
            seq = build_gar_sequence(ids, durations, first, gar.token_space, gar.layout_spec)
            prompts.append(seq.input_ids)
            phonemes.append(ids)
            codes.append(row_codes)
        return prompts, phonemes, codes

    def _check_length(self, prompts: list[list[int]], phonemes: list[list[int]], done: list[int], prompt_frames: list[int]) -> None:
        """Refuse texts (or prompts) whose GAR sequence would run far past ``max_position_embeddings``.

        Args:
            prompts / phonemes: As from :meth:`build_prompts`.
            done: Phonemes each prompt already spells out in interleaved form (0 for VALL-E).
            prompt_frames: Codec frames of each row's prompt audio (0 without one).

        Raises:
            ValueError: With the size of the longest row and what to shorten: the prompt audio when
                it takes most of the positions, else the text.
        """
        gar_config = self.config.gar_config
        limit = gar_config.max_position_embeddings
        for prompt, row, closed, frames in zip(prompts, phonemes, done, prompt_frames):
            expected = len(prompt) + (len(row) - closed) * EXPECTED_TOKENS_PER_PHONEME
            if expected <= limit:
                continue
            if frames > limit // 2:  # the prompt audio's frames alone take half the positions
                seconds = frames / gar_config.frame_rate
                raise ValueError(
                    f"The prompt audio ({seconds:.1f} s) alone takes over {frames} of the {limit} GAR positions the model "
                    "was trained for (max_position_embeddings); use a prompt of 3-10 s."
                )
            raise ValueError(
                f"A text of {len(row) - closed} phoneme tokens needs about {expected} GAR positions but the model "
                f"was trained for max_position_embeddings={limit}. Split it into "
                "sentences first: ella_v_hf.synthesis.synthesize (and `ella-v synthesize`) does this."
            )

    @torch.inference_mode()
    def generate(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        prompt_input_ids: torch.LongTensor | None = None,
        prompt_attention_mask: torch.Tensor | None = None,
        prompt_durations: torch.LongTensor | None = None,
        prompt_codes: torch.LongTensor | None = None,
        prompt_num_frames: torch.LongTensor | None = None,
        prompt_input_values: torch.Tensor | None = None,
        prompt_padding_mask: torch.Tensor | None = None,
        check_alignment: bool = True,
        generation_config: GenerationConfig | None = None,
        logits_processor: LogitsProcessorList | None = None,
        streamer=None,
        stopping_criteria: StoppingCriteriaList | None = None,
        **kwargs,
    ) -> EllaVTTSOutput:
        """Text (+ prompt) -> waveforms.

        Args:
            input_ids, attention_mask: ``[B, L]`` target phoneme ids, as ``EllaVProcessor`` returns them.
            prompt_input_ids, prompt_attention_mask: ``[B, Lp]`` prompt transcript ids.
            prompt_input_values, prompt_padding_mask: ``[B, 1, S]`` prompt audio at the codec's rate
                and ``[B, S]`` its valid samples (from ``EllaVProcessor``); the model encodes it with
                its codec and aligns it with its aligner.
            prompt_durations, prompt_codes, prompt_num_frames: Instead of audio, an already encoded
                and aligned prompt (``[B, Lp]``, ``[B, K, Tp]``, ``[B]``).
            check_alignment: Refuse prompt audio whose transcript does not match it.
            generation_config: An :class:`EllaVGenerationConfig` (or stock ``GenerationConfig``) for
                this call; its unset fields come from ``self.generation_config``.
            logits_processor: Extra processors for the GAR, applied before the phoneme-advance rule
                (and after classifier-free guidance, with ``guidance_scale``).
            streamer: An :class:`~ella_v_hf.modeling.EllaVAudioStreamer` that receives audio chunks
                while the GAR runs.
            stopping_criteria: Extra stock stopping criteria for the GAR (e.g. one that stops when a
                client cancels); a row they stop before its EOS is reported in ``infinite``.
            kwargs: Generation fields (``do_sample``, ``temperature``, ``top_k``, ``top_p``,
                ``max_new_tokens``, ``num_return_sequences``, ``max_frames_per_phone``, …), which
                override ``generation_config``; see :class:`EllaVGenerationConfig` for what is
                supported (the rest raises ``ValueError``).

        Returns:
            :class:`EllaVTTSOutput` (``B * num_return_sequences`` rows). Synthesis runs under
            ``torch.inference_mode()`` (a little faster than ``no_grad``), so the returned tensors are inference tensors:
            ``.clone()`` one outside the mode before an in-place edit or autograd.

        Raises:
            ValueError: An unsupported or out-of-range generation option, or unknown keyword arguments.
        """
        config, unused = merge_generation_config(self.generation_config, generation_config, kwargs)
        if unused:
            raise ValueError(
                f"EllaVForTextToSpeech.generate() got unexpected arguments {sorted(unused)}; generation options are "
                "the fields of EllaVGenerationConfig."
            )
        config.check_supported()
        guided = config.guidance_scale is not None and config.guidance_scale != 1
        if guided and not self.config.gar_config.text_dropout:
            raise ValueError(
                f"guidance_scale={config.guidance_scale} needs a GAR trained with text_dropout > 0 (classifier-free guidance "
                "contrasts it with the GAR's text-unconditional distribution, which this GAR never learned); "
                "train one with gar_text_dropout in the recipe, or leave guidance_scale unset."
            )
        repeats = config.num_return_sequences or 1
        if streamer is not None:
            if not isinstance(streamer, EllaVAudioStreamer):
                raise ValueError(
                    f"streamer must be an EllaVAudioStreamer (audio chunks), got {type(streamer).__name__}; "
                    "a text streamer cannot print speech."
                )
            if input_ids.shape[0] * repeats != 1:
                raise ValueError("Streaming works on one text at a time (batch size 1, num_return_sequences=1).")
        if repeats > 1:  # one row per sample; a shared prompt is still encoded and aligned once
            def expand(tensor):
                return None if tensor is None else tensor.repeat_interleave(repeats, dim=0)

            input_ids, attention_mask, prompt_input_ids, prompt_attention_mask = map(
                expand, (input_ids, attention_mask, prompt_input_ids, prompt_attention_mask)
            )
            prompt_durations, prompt_codes, prompt_num_frames, prompt_input_values, prompt_padding_mask = map(
                expand, (prompt_durations, prompt_codes, prompt_num_frames, prompt_input_values, prompt_padding_mask)
            )
        prompts, phonemes, prompt_code_rows = self.prepare_prompts(
            input_ids, attention_mask, prompt_input_ids, prompt_attention_mask, prompt_durations, prompt_codes,
            prompt_num_frames, prompt_input_values, prompt_padding_mask, check_alignment,
        )
        targets = int(attention_mask.sum(1).max()) if attention_mask is not None else input_ids.shape[1]
        first = self.generate_first_codebook(
            prompts, phonemes, prompt_code_rows, config, targets=targets, logits_processor=logits_processor,
            streamer=streamer, stopping_criteria=stopping_criteria,
        )
        return self.decode_speech(first, phonemes, prompt_code_rows, config)

    def prepare_prompts(
        self,
        input_ids: torch.LongTensor,  # [B, L]
        attention_mask: torch.Tensor | None = None,  # [B, L]
        prompt_input_ids: torch.LongTensor | None = None,  # [B, Lp]
        prompt_attention_mask: torch.Tensor | None = None,
        prompt_durations: torch.LongTensor | None = None,  # [B, Lp]
        prompt_codes: torch.LongTensor | None = None,  # [B, K, Tp]
        prompt_num_frames: torch.LongTensor | None = None,  # [B]
        prompt_input_values: torch.Tensor | None = None,  # [B, 1, S]
        prompt_padding_mask: torch.Tensor | None = None,  # [B, S]
        check_alignment: bool = True,
    ) -> tuple[list[list[int]], list[list[int]], list[torch.LongTensor | None]]:
        """Stage 1 of :meth:`generate`: encode and align any prompt audio, and lay out each row's GAR prompt.

        Returns:
            ``(prompts, phonemes, prompt_code_rows)``: per row the GAR's prompt token ids, the target
            phoneme ids and the prompt's codes ``[K, Tp]`` (``None`` without a prompt).
        """
        if prompt_input_values is not None and prompt_codes is None:
            if prompt_input_ids is None:
                raise ValueError("prompt_input_values needs prompt_input_ids (the prompt's transcript).")
            prompt_durations, prompt_codes, prompt_num_frames = self._encode_prompts(
                prompt_input_ids, prompt_attention_mask, prompt_input_values, prompt_padding_mask, check_alignment
            )
        return self.build_prompts(
            input_ids, attention_mask, prompt_input_ids, prompt_attention_mask, prompt_durations, prompt_codes, prompt_num_frames
        )

    def generate_first_codebook(
        self,
        prompts: list[list[int]],
        phonemes: list[list[int]],
        prompt_code_rows: list[torch.LongTensor | None],
        config: EllaVGenerationConfig,
        targets: int | None = None,
        logits_processor: LogitsProcessorList | None = None,
        streamer=None,
        stopping_criteria: StoppingCriteriaList | None = None,
    ) -> FirstCodebook:
        """Stage 2 of :meth:`generate`: the GAR's stock ``generate()`` under the phoneme-advance rule.

        Args:
            prompts, phonemes, prompt_code_rows: From :meth:`prepare_prompts`.
            config: A checked :class:`EllaVGenerationConfig` (``merge_generation_config``).
            targets: The longest row's target phoneme count (the VALL-E length cap; default: from ``phonemes``).
            logits_processor, streamer, stopping_criteria: As :meth:`generate` takes them.
        """
        gar_config = self.config.gar_config
        space: TokenSpace = gar_config.token_space
        spec = gar_config.layout_spec
        device = self.gar.device
        guided = config.guidance_scale is not None and config.guidance_scale != 1
        cap = gar_config.max_frames_per_phone if config.max_frames_per_phone is None else config.max_frames_per_phone
        done = [len(parse_gar_sequence(q, space, spec).phonemes) if spec.interleaved else 0 for q in prompts]
        self._check_length(prompts, phonemes, done, [0 if c is None else c.shape[-1] for c in prompt_code_rows])
        if spec.interleaved:
            remaining = max(len(p) - d + 1 for p, d in zip(phonemes, done))
            max_new_tokens = remaining * (cap + 2) + 2
        else:
            targets = targets if targets is not None else max(map(len, phonemes))
            per_phone = config.vall_e_max_frames_per_phone or self.config.vall_e_max_frames_per_phone
            max_new_tokens = targets * per_phone + 1
        if config.max_new_tokens is not None:
            max_new_tokens = min(max_new_tokens, config.max_new_tokens)
        length = max(map(len, prompts))
        ids = torch.full((len(prompts), length), space.PAD, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for b, prompt in enumerate(prompts):
            ids[b, length - len(prompt) :] = torch.tensor(prompt)
            mask[b, length - len(prompt) :] = 1
        first_codes = getattr(self.config.codec_config, "first_codebook_size", None)  # codes the codec's first level decodes
        first_codes = min(first_codes, space.codebook_size) if first_codes else space.codebook_size
        processor = EllaVPhonemeAdvanceLogitsProcessor(
            space, spec, cap, phonemes=phonemes if spec.interleaved else None,
            acoustic_codes=first_codes,
            eop_quantile=config.eop_quantile if spec.interleaved else None,
        )
        gar_generation = config.gar_generation_config(
            max_new_tokens=max_new_tokens, eos_token_id=space.EOS, pad_token_id=space.PAD, bos_token_id=space.BOS, num_beams=1
        )
        expected = (config.nar_decoding or "expected") == "expected"
        recorder = None  # the first level's sampling distributions, for first_level_decoding="expected"
        if (config.first_level_decoding or "code") == "expected" and gar_generation.do_sample:
            recorder = EllaVFirstLevelRecorder(space, first_codes, gar_generation)
        watcher = None
        if streamer is not None:
            streamer.start(self.config.sampling_rate)
            watcher = GarTokenWatcher(
                streamer, space, spec,
                prompt_frames=0 if prompt_code_rows[0] is None else prompt_code_rows[0].shape[-1],
                decode_codes=lambda first, parsed: self._nar_decode(
                    phonemes[0], first.to(device), prompt_code_rows[0], parsed, return_probabilities=expected
                ),
                decode_audio=self._codec_decode,
                samples_per_frame=round(self.config.sampling_rate / self.config.codec_config.frame_rate),
                first_probabilities=None if recorder is None else (lambda generated: recorder.frame_probabilities(0, generated)),
            )
        # Guidance's text-free branch runs as B more rows of the same forward, which returns the B
        # rows' guided scores (text_free_guidance), so every decoding loop sees B rows.
        guidance = {"text_free_rows": True, "text_free_guidance": config.guidance_scale} if guided else {}
        jump_forward = (
            config.jump_forward is True and spec.interleaved and len(prompts) == 1
            and gar_generation.cache_implementation is None
        )
        sequences = self.gar.generate(
            ids.to(device),
            attention_mask=mask.to(device),
            logits_processor=LogitsProcessorList([*(logits_processor or []), processor, *([recorder] if recorder else [])]),
            generation_config=gar_generation,
            streamer=watcher,
            stopping_criteria=stopping_criteria,
            jump_forward=jump_forward,
            **guidance,
        )
        return FirstCodebook(sequences=sequences, prompt_length=length, cuts=processor.cuts.cpu(), recorder=recorder, watcher=watcher)

    def decode_speech(
        self,
        first: FirstCodebook,
        phonemes: list[list[int]],
        prompt_code_rows: list[torch.LongTensor | None],
        config: EllaVGenerationConfig,
    ) -> EllaVTTSOutput:
        """Stages 3 and 4 of :meth:`generate`: per row, the NAR's codebooks 2..K (:meth:`_nar_decode`)
        and the codec's waveform (:meth:`_codec_decode`); a streamed row's audio is its joined stream."""
        space, spec = self.config.gar_config.token_space, self.config.gar_config.layout_spec
        device = self.gar.device
        expected = (config.nar_decoding or "expected") == "expected"
        sequences, recorder, watcher = first.sequences, first.recorder, first.watcher
        audio, lengths, code_rows, infinite, first_rows = [], [], [], [], []
        for b in range(sequences.shape[0]):
            parsed = parse_gar_sequence(sequences[b].tolist(), space, spec, strict=False)
            generated = sequences[b, first.prompt_length :].tolist()
            first_probabilities = None if recorder is None else recorder.frame_probabilities(b, generated).to(device)
            first_rows.append(first_probabilities)
            prompt_frames = 0 if prompt_code_rows[b] is None else prompt_code_rows[b].shape[-1]
            infinite.append(not parsed.complete)
            if watcher is not None:  # the stream, joined, is the output
                codes = watcher.codes if watcher.codes is not None else torch.zeros(self.config.nar_config.num_codebooks, 0, dtype=torch.long)
                wave = torch.from_numpy(watcher.audio).to(device)
            else:
                drawn = torch.tensor(parsed.codes[prompt_frames:], dtype=torch.long, device=device)
                codes, probabilities = self._nar_decode(phonemes[b], drawn, prompt_code_rows[b], parsed, return_probabilities=expected)
                wave = self._codec_decode(codes, probabilities, first_probabilities) if codes.shape[-1] else torch.zeros(0, device=device)
            code_rows.append(codes)
            audio.append(wave)
            lengths.append(wave.shape[-1])
        longest = max(lengths) if lengths else 0
        padded = torch.stack([F.pad(w, (0, longest - w.shape[-1])) for w in audio]) if audio else torch.zeros(0, 0)
        return EllaVTTSOutput(
            audio=padded.float(),
            audio_lengths=torch.tensor(lengths),
            codes=code_rows,
            sequences=sequences,
            cuts=first.cuts,
            infinite=torch.tensor(infinite),
            prompt_frames=torch.tensor([0 if c is None else c.shape[-1] for c in prompt_code_rows]),
            first_code_probabilities=None if recorder is None else first_rows,
        )

    def _nar_decode(
        self,
        phonemes: list[int],
        first: torch.LongTensor,  # [T]
        prompt_codes: torch.LongTensor | None,  # [K, Tp]
        parsed: ParsedGarSequence | None = None,
        return_probabilities: bool = False,
    ) -> tuple[torch.LongTensor, torch.Tensor | None]:
        """Codebooks 2..K for one row: ``[T]`` -> ``(codes [K, T], probabilities [K - 1, T, C] | None)``.

        ``parsed`` is the row's generated GAR sequence (prompt included); a ``frame_phonemes`` NAR
        reads each frame's phoneme from it. ``probabilities`` (with ``return_probabilities``) are the
        NAR's distributions over the codes of codebooks 2..K, for ``nar_decoding="expected"``.
        """
        gar_config = self.config.gar_config
        space = gar_config.token_space
        num_codebooks = self.config.nar_config.num_codebooks
        if first.numel() == 0:
            empty = torch.zeros(num_codebooks - 1, 0, self.config.nar_config.codebook_size, device=first.device)
            return torch.zeros(num_codebooks, 0, dtype=torch.long, device=first.device), empty if return_probabilities else None
        phoneme_ids = space.phoneme_tensor(phonemes, device=first.device)[None]
        prompt = None if prompt_codes is None else prompt_codes.to(first.device)[None]
        aligned = None
        if self.config.nar_config.frame_phonemes:
            if parsed is None:
                raise ValueError("A frame_phonemes NAR needs the parsed GAR sequence of the row.")
            durations = sequence_to_alignment_durations(parsed.frame_counts, gar_config.layout_spec.local_advance)
            ids = frame_phoneme_ids(parsed.phonemes, durations, space)  # [Tp + T]
            aligned = torch.tensor(ids, dtype=torch.long, device=first.device)[None]
        decoded = self.nar.decode_codebooks(
            phoneme_ids, first[None], prompt_codes=prompt, frame_phoneme_ids=aligned, return_probabilities=return_probabilities
        )
        if return_probabilities:
            return decoded[0][0], decoded[1][0]
        return decoded[0], None

    def _codec_decode(
        self, codes: torch.LongTensor, probabilities: torch.Tensor | None = None, first_probabilities: torch.Tensor | None = None
    ) -> torch.FloatTensor:
        """``[K, T]`` (and optionally the NAR's ``[K - 1, T, C]`` distributions of codebooks 2..K and
        the GAR's ``[T, C_1]`` of the first, decoded from their expected vectors) -> waveform ``[S]``."""
        return self.codec.decode(
            codes[None],
            code_probabilities=None if probabilities is None else probabilities[None],
            first_code_probabilities=None if first_probabilities is None else first_probabilities[None],
        )[0, 0]

    @torch.no_grad()
    def encode_prompt(
        self, waveform: torch.Tensor, phoneme_ids: list[int], check_alignment: bool = True
    ) -> tuple[torch.LongTensor, list[int]]:
        """Codes and per-token durations of one prompt.

        Args:
            waveform: ``[S]`` mono prompt audio at ``config.sampling_rate`` (``EllaVProcessor`` resamples).
            phoneme_ids: Tokenizer ids of its transcript.
            check_alignment: Refuse a transcript that does not match the audio.

        Returns:
            ``(codes [K, T], durations)`` with ``sum(durations) == T``.

        Raises:
            ValueError: The checkpoint has no aligner, or the aligner and codec disagree on the frame count.
            AlignmentError: The transcript does not match the audio (with ``check_alignment``).
        """
        if self.aligner is None:
            raise ValueError("This checkpoint has no aligner (config.aligner_config), so it cannot use prompt audio.")
        waveform = waveform.float().to(self.codec.device)
        codes = self.codec.encode(waveform[None, None])[0].long()  # [K, T]
        try:
            durations = self.aligner.align(waveform.cpu(), phoneme_ids, check=check_alignment).durations
        except AlignmentError as error:
            clipped = float((waveform.abs() >= 0.999).float().mean())
            if clipped > 0.01:  # distortion, not (only) a wrong transcript
                raise AlignmentError(
                    f"{error}. The prompt is heavily clipped ({100 * clipped:.1f} % of samples at full scale), which also "
                    "spoils the alignment: record it at a lower level"
                ) from error
            raise
        if codes.shape[-1] != sum(durations):
            raise AlignmentError(
                f"The codec gave {codes.shape[-1]} frames but the alignment covers {sum(durations)}: "
                "the aligner and codec frontends disagree."
            )
        return codes, durations

    def _encode_prompts(
        self,
        prompt_input_ids: torch.LongTensor,  # [B, Lp]
        prompt_attention_mask: torch.Tensor | None,  # [B, Lp]
        prompt_input_values: torch.Tensor,  # [B, 1, S]
        prompt_padding_mask: torch.Tensor | None,  # [B, S]
        check_alignment: bool,
    ) -> tuple[torch.LongTensor, torch.LongTensor, torch.LongTensor]:
        """Batched :meth:`encode_prompt`: ``(prompt_durations [B, Lp], prompt_codes [B, K, Tp], prompt_num_frames [B])``."""
        durations = torch.zeros_like(prompt_input_ids)
        rows, frames, seen = [], [], {}
        for b in range(prompt_input_ids.shape[0]):
            mask = torch.ones_like(prompt_input_ids[b]) if prompt_attention_mask is None else prompt_attention_mask[b]
            samples = prompt_input_values.shape[-1] if prompt_padding_mask is None else int(prompt_padding_mask[b].sum())
            ids, waveform = prompt_input_ids[b][mask.bool()].tolist(), prompt_input_values[b, 0, :samples]
            same = next((j for j, (other_ids, other) in seen.items() if other_ids == ids and torch.equal(other, waveform)), None)
            codes, row = (rows[same], durations[same, : len(ids)].tolist()) if same is not None else self.encode_prompt(waveform, ids, check_alignment)
            seen[b] = (ids, waveform)  # one prompt for many texts is encoded and aligned once
            durations[b, : len(row)] = torch.tensor(row)
            rows.append(codes)
            frames.append(codes.shape[-1])
        longest = max(frames)
        codes = torch.stack([F.pad(c, (0, longest - c.shape[-1])) for c in rows])
        return durations, codes, torch.tensor(frames)


EllaVTTSConfig.register_for_auto_class()
EllaVForTextToSpeech.register_for_auto_class("AutoModelForTextToWaveform")
AutoConfig.register(EllaVTTSConfig.model_type, EllaVTTSConfig, exist_ok=True)
AutoModel.register(EllaVTTSConfig, EllaVForTextToSpeech, exist_ok=True)
AutoModelForTextToWaveform.register(EllaVTTSConfig, EllaVForTextToSpeech, exist_ok=True)

__all__ = ["EllaVForTextToSpeech", "EllaVTTSConfig", "EllaVTTSOutput", "FirstCodebook"]
