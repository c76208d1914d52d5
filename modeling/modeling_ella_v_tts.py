"""EllaVForTextToSpeech: GAR + NAR + codec in one PreTrainedModel whose ``generate()`` returns
waveforms, so ``pipeline("text-to-speech", model=dir)`` works and one directory goes to the Hub."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import AutoConfig, EncodecConfig, EncodecModel, GenerationConfig, LogitsProcessorList, PreTrainedConfig
from transformers.utils import ModelOutput

from .codec_mel import EllaVMelCodecConfig, EllaVMelCodecModel
from .configuration_ella_v import EllaVConfig, EllaVNARConfig
from .generation_ella_v import EllaVPhonemeAdvanceLogitsProcessor
from .modeling_ella_v import EllaVForCausalLM, EllaVNARModel, EllaVPreTrainedModel
from .sequence_layout import (
    ParsedGarSequence,
    TokenSpace,
    build_gar_sequence,
    frame_phoneme_ids,
    parse_gar_sequence,
    sequence_to_alignment_durations,
)

#: GAR tokens one phoneme token takes on average in English speech at 50 Hz (itself, its EOP and
#: ~4-5 frames; ELLA-V also repeats it in the prefix): the yardstick of the length check.
EXPECTED_TOKENS_PER_PHONEME = 8


def _codec_config(value) -> PreTrainedConfig:
    if isinstance(value, PreTrainedConfig):
        return value
    value = dict(value or {})
    model_type = value.pop("model_type", EllaVMelCodecConfig.model_type)
    if model_type == EllaVMelCodecConfig.model_type:
        return EllaVMelCodecConfig(**value)
    if model_type == "encodec":
        return EncodecConfig(**value)
    return AutoConfig.for_model(model_type, **value)


class EllaVTTSConfig(PreTrainedConfig):
    """Configuration of :class:`EllaVForTextToSpeech`.

    Args:
        gar_config: :class:`EllaVConfig` (or its dict).
        nar_config: :class:`EllaVNARConfig` (or its dict).
        codec_config: :class:`EllaVMelCodecConfig` (default) or ``EncodecConfig`` (or a dict with ``model_type``).
        codec_bandwidth: EnCodec bandwidth in kbps (6.0 = 8 codebooks); unused for the mel codec.
        vall_e_max_frames_per_phone: VALL-E decoding stops after this many frames per target
            phoneme on average (its rows that get there count as infinite: INF).
        sentence_pause_seconds: Silence inserted between sentences of a long text.
    """

    model_type = "ella_v_tts"

    gar_config: dict | PreTrainedConfig | None = None
    nar_config: dict | PreTrainedConfig | None = None
    codec_config: dict | PreTrainedConfig | None = None
    codec_bandwidth: float | None = None
    vall_e_max_frames_per_phone: int | None = None
    sentence_pause_seconds: float = 0.15

    def __post_init__(self, **kwargs) -> None:
        self.codec_config = _codec_config(self.codec_config)
        codec = self.codec_config
        if isinstance(codec, EncodecConfig):
            bandwidth = self.codec_bandwidth or 6.0
            if bandwidth not in codec.target_bandwidths:
                raise ValueError(f"codec_bandwidth {bandwidth} not in the EnCodec target_bandwidths {codec.target_bandwidths}")
            self.codec_bandwidth = bandwidth
            num_codebooks = int(bandwidth * 1000 // (codec.frame_rate * (codec.codebook_size.bit_length() - 1)))
            frame_rate = float(codec.frame_rate)
        else:
            num_codebooks, frame_rate = codec.num_codebooks, float(codec.frame_rate)
        shared = dict(codebook_size=codec.codebook_size, num_codebooks=num_codebooks, sampling_rate=codec.sampling_rate, frame_rate=frame_rate)
        self.gar_config = self.gar_config if isinstance(self.gar_config, EllaVConfig) else EllaVConfig(**{**shared, **(self.gar_config or {})})
        self.nar_config = self.nar_config if isinstance(self.nar_config, EllaVNARConfig) else EllaVNARConfig(**{**shared, **(self.nar_config or {})})
        for name, sub in (("gar_config", self.gar_config), ("nar_config", self.nar_config)):
            for key, value in shared.items():
                if getattr(sub, key) != value:
                    raise ValueError(f"{name}.{key} = {getattr(sub, key)} but the codec has {value}")
        if self.gar_config.num_phonemes != self.nar_config.num_phonemes:
            raise ValueError(
                f"gar_config.num_phonemes ({self.gar_config.num_phonemes}) != nar_config.num_phonemes ({self.nar_config.num_phonemes})"
            )
        if self.nar_config.frame_phonemes and not self.gar_config.layout_spec.interleaved:
            raise ValueError(
                "nar_config.frame_phonemes needs each frame's phoneme at inference, which only the interleaved "
                f"ELLA-V layout provides; this GAR has layout={self.gar_config.layout!r}."
            )
        if self.vall_e_max_frames_per_phone is None:
            self.vall_e_max_frames_per_phone = self.gar_config.max_frames_per_phone
        super().__post_init__(**kwargs)

    @property
    def sampling_rate(self) -> int:
        """Output sampling rate (the codec's)."""
        return self.codec_config.sampling_rate

    def to_dict(self) -> dict:
        output = super().to_dict()
        for key in ("gar_config", "nar_config", "codec_config"):
            value = getattr(self, key)
            output[key] = value.to_dict() if isinstance(value, PreTrainedConfig) else value
        return output


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
    """

    audio: torch.FloatTensor | None = None
    audio_lengths: torch.LongTensor | None = None
    codes: list[torch.LongTensor] | None = None
    sequences: torch.LongTensor | None = None
    cuts: torch.LongTensor | None = None
    infinite: torch.BoolTensor | None = None


@dataclass
class EllaVTTSTrainingOutput(ModelOutput):
    """Losses of :meth:`EllaVForTextToSpeech.forward` (``loss = gar_loss + nar_loss``)."""

    loss: torch.FloatTensor | None = None
    gar_loss: torch.FloatTensor | None = None
    nar_loss: torch.FloatTensor | None = None


class EllaVForTextToSpeech(EllaVPreTrainedModel):
    """ELLA-V (or VALL-E) text-to-speech: GAR (first codebook), NAR (codebooks 2..K) and codec.

    ``generate(**processor(text, prompt_audio=…, prompt_text=…))`` returns waveforms. The
    training entry points are the sub-models (``model.gar``, ``model.nar``).
    """

    config_class = EllaVTTSConfig
    main_input_name = "input_ids"
    base_model_prefix = "tts"
    _no_split_modules = ["EllaVDecoderLayer"]
    _remote_auto_map = {"AutoModel": "EllaVForTextToSpeech", "AutoModelForTextToWaveform": "EllaVForTextToSpeech"}

    def __init__(self, config: EllaVTTSConfig) -> None:
        super().__init__(config)
        self.gar = EllaVForCausalLM(config.gar_config)
        self.nar = EllaVNARModel(config.nar_config)
        if isinstance(config.codec_config, EncodecConfig):
            self.codec = EncodecModel(config.codec_config)
        else:
            self.codec = EllaVMelCodecModel(config.codec_config)
        self.post_init()
        self.generation_config = GenerationConfig(do_sample=True, temperature=1.0, top_k=0, top_p=0.9)

    def _init_weights(self, module) -> None:
        pass  # the sub-models initialise themselves

    @classmethod
    def can_generate(cls) -> bool:
        return True  # generate() is ours (GAR generate + NAR + codec), not GenerationMixin's

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,  # [B, L] GAR sequences (GarCollator)
        attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        nar_inputs: dict | None = None,  # EllaVNARModel.forward kwargs (NarCollator)
        **kwargs,
    ) -> EllaVTTSTrainingOutput:
        """Training forward: GAR loss, NAR loss, or both summed (one call, so distributed
        wrappers see every parameter that gets a gradient)."""
        gar_loss = nar_loss = None
        if input_ids is not None:
            gar_loss = self.gar(input_ids=input_ids, attention_mask=attention_mask, labels=labels, use_cache=False, **kwargs).loss
        if nar_inputs is not None:
            nar_loss = self.nar(**nar_inputs).loss
        parts = [x for x in (gar_loss, nar_loss) if x is not None]
        if not parts:
            raise ValueError("Pass GAR inputs (input_ids, labels) and/or nar_inputs.")
        return EllaVTTSTrainingOutput(loss=sum(parts), gar_loss=gar_loss, nar_loss=nar_loss)

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
            raise ValueError("A prompt needs prompt_durations and prompt_codes (EllaVProcessor with an aligner and codec).")
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

    def _check_length(self, prompts: list[list[int]], phonemes: list[list[int]], done: list[int]) -> None:
        """Refuse texts whose GAR sequence would run far past ``max_position_embeddings``.

        Args:
            prompts / phonemes: As from :meth:`build_prompts`.
            done: Phonemes each prompt already spells out in interleaved form (0 for VALL-E).

        Raises:
            ValueError: With the size of the longest row and how to split the text.
        """
        gar_config = self.config.gar_config
        for prompt, row, closed in zip(prompts, phonemes, done):
            expected = len(prompt) + (len(row) - closed) * EXPECTED_TOKENS_PER_PHONEME
            if expected > gar_config.max_position_embeddings:
                raise ValueError(
                    f"A text of {len(row)} phoneme tokens needs about {expected} GAR positions but the model "
                    f"was trained for max_position_embeddings={gar_config.max_position_embeddings}. Split it into "
                    "sentences first: ella_v_hf.synthesis.synthesize (and `ella-v synthesize`) does this."
                )

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        prompt_input_ids: torch.LongTensor | None = None,
        prompt_attention_mask: torch.Tensor | None = None,
        prompt_durations: torch.LongTensor | None = None,
        prompt_codes: torch.LongTensor | None = None,
        prompt_num_frames: torch.LongTensor | None = None,
        do_sample: bool | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        max_frames_per_phone: int | None = None,
        generation_config: GenerationConfig | None = None,
        **kwargs,
    ) -> EllaVTTSOutput:
        """Text (+ prompt) -> waveforms.

        Args:
            input_ids, attention_mask, prompt_*: As returned by ``EllaVProcessor``.
            do_sample / temperature / top_k / top_p: GAR decoding (stock ``generate()``); the NAR is
                greedy. Unset ones come from ``generation_config``, else from ``self.generation_config``
                (sampling with top-p 0.9).
            max_frames_per_phone: Override the frame cap (ELLA-V).
            generation_config: Decoding defaults for this call.
            kwargs: Other generation arguments the pipeline passes (ignored where they do not apply).

        Returns:
            :class:`EllaVTTSOutput`.
        """
        for config in (generation_config, self.generation_config):
            if config is None:
                continue
            do_sample = config.do_sample if do_sample is None else do_sample
            temperature = config.temperature if temperature is None else temperature
            top_k = config.top_k if top_k is None else top_k
            top_p = config.top_p if top_p is None else top_p
        gar_config = self.config.gar_config
        space: TokenSpace = gar_config.token_space
        spec = gar_config.layout_spec
        device = self.gar.device
        prompts, phonemes, prompt_code_rows = self.build_prompts(
            input_ids, attention_mask, prompt_input_ids, prompt_attention_mask, prompt_durations, prompt_codes, prompt_num_frames
        )
        cap = int(max_frames_per_phone or gar_config.max_frames_per_phone)
        done = [len(parse_gar_sequence(q, space, spec).phonemes) if spec.interleaved else 0 for q in prompts]
        self._check_length(prompts, phonemes, done)
        if spec.interleaved:
            remaining = max(len(p) - d + 1 for p, d in zip(phonemes, done))
            max_new_tokens = remaining * (cap + 2) + 2
        else:
            targets = int(attention_mask.sum(1).max()) if attention_mask is not None else input_ids.shape[1]
            max_new_tokens = targets * self.config.vall_e_max_frames_per_phone + 1
        length = max(map(len, prompts))
        ids = torch.full((len(prompts), length), space.PAD, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for b, prompt in enumerate(prompts):
            ids[b, length - len(prompt) :] = torch.tensor(prompt)
            mask[b, length - len(prompt) :] = 1
        processor = EllaVPhonemeAdvanceLogitsProcessor(space, spec, cap, phonemes=phonemes if spec.interleaved else None)
        sampling = dict(do_sample=bool(do_sample))
        if do_sample:
            sampling.update(temperature=temperature or 1.0, top_k=top_k or 0, top_p=1.0 if top_p is None else top_p)
        sequences = self.gar.generate(
            ids.to(device),
            attention_mask=mask.to(device),
            logits_processor=LogitsProcessorList([processor]),
            max_new_tokens=max_new_tokens,
            eos_token_id=space.EOS,
            pad_token_id=space.PAD,
            bos_token_id=space.BOS,
            num_beams=1,
            **sampling,
        )
        audio, lengths, code_rows, infinite = [], [], [], []
        for b in range(len(prompts)):
            parsed = parse_gar_sequence(sequences[b].tolist(), space, spec, strict=False)
            prompt_frames = 0 if prompt_code_rows[b] is None else prompt_code_rows[b].shape[-1]
            first = torch.tensor(parsed.codes[prompt_frames:], dtype=torch.long, device=device)
            infinite.append(not parsed.complete)
            codes = self._nar_decode(phonemes[b], first, prompt_code_rows[b], parsed)
            code_rows.append(codes)
            wave = self._codec_decode(codes) if codes.shape[-1] else torch.zeros(0, device=device)
            audio.append(wave)
            lengths.append(wave.shape[-1])
        longest = max(lengths) if lengths else 0
        padded = torch.stack([F.pad(w, (0, longest - w.shape[-1])) for w in audio]) if audio else torch.zeros(0, 0)
        return EllaVTTSOutput(
            audio=padded.float(),
            audio_lengths=torch.tensor(lengths),
            codes=code_rows,
            sequences=sequences,
            cuts=processor.cuts.cpu(),
            infinite=torch.tensor(infinite),
        )

    def _nar_decode(
        self,
        phonemes: list[int],
        first: torch.LongTensor,  # [T]
        prompt_codes: torch.LongTensor | None,  # [K, Tp]
        parsed: ParsedGarSequence | None = None,
    ) -> torch.LongTensor:
        """Codebooks 2..K for one row: ``[T]`` -> ``[K, T]``.

        ``parsed`` is the row's generated GAR sequence (prompt included); a ``frame_phonemes`` NAR
        reads each frame's phoneme from it.
        """
        gar_config = self.config.gar_config
        space = gar_config.token_space
        if first.numel() == 0:
            return torch.zeros(self.config.nar_config.num_codebooks, 0, dtype=torch.long, device=first.device)
        phoneme_ids = torch.tensor([space.phoneme_offset + p for p in phonemes], device=first.device)[None]
        prompt = None if prompt_codes is None else prompt_codes.to(first.device)[None]
        aligned = None
        if self.config.nar_config.frame_phonemes:
            if parsed is None:
                raise ValueError("A frame_phonemes NAR needs the parsed GAR sequence of the row.")
            durations = sequence_to_alignment_durations(parsed.frame_counts, gar_config.layout_spec.local_advance)
            ids = frame_phoneme_ids(parsed.phonemes, durations, space)  # [Tp + T]
            aligned = torch.tensor(ids, dtype=torch.long, device=first.device)[None]
        return self.nar.decode_codebooks(phoneme_ids, first[None], prompt_codes=prompt, frame_phoneme_ids=aligned)[0]

    def _codec_decode(self, codes: torch.LongTensor) -> torch.FloatTensor:
        """``[K, T]`` -> waveform ``[S]``."""
        if isinstance(self.codec, EncodecModel):
            return self.codec.decode(codes[None, None], [None]).audio_values[0, 0]
        return self.codec.decode(codes[None])[0, 0]


EllaVTTSConfig.register_for_auto_class()
EllaVForTextToSpeech.register_for_auto_class("AutoModelForTextToWaveform")

__all__ = ["EllaVForTextToSpeech", "EllaVTTSConfig", "EllaVTTSOutput"]
