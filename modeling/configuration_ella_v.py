"""Configurations of the ELLA-V generalized autoregressive model (GAR) and of the NAR model."""

from __future__ import annotations

from transformers import PreTrainedConfig

from .decode_weights import decode_weight_dtype
from .sequence_layout import LAYOUTS, LayoutSpec, TokenSpace

#: Frame cap of the paper (ELLA-V, section 3.3): a phoneme may own at most 0.4 s of audio.
PAPER_MAX_PHONE_SECONDS = 0.4
#: Local advance (frames) used when none is given for the ELLA-V layout. The paper gives no value.
DEFAULT_LOCAL_ADVANCE = 1


class EllaVBaseConfig(PreTrainedConfig):
    """Fields shared by the GAR and NAR configurations: token space, codec rates, Llama-style dims.

    Args:
        num_phonemes: Size of the phoneme vocabulary (the phoneme tokenizer's symbols, including
            word-boundary / pause / unknown symbols).
        codebook_size: Codes per codec codebook (EnCodec: 1024).
        num_codebooks: Codec codebooks (EnCodec 6 kbps: 8). The GAR predicts the first one.
        sampling_rate: Codec sampling rate in Hz (EnCodec 24 kHz: 24000).
        frame_rate: Codec frames per second (EnCodec 24 kHz: 75).
        hidden_size: Transformer width.
        num_hidden_layers: Transformer depth.
        num_attention_heads: Attention heads.
        num_key_value_heads: Key/value heads (grouped-query attention); ``None`` = ``num_attention_heads``.
        head_dim: Per-head width; ``None`` = ``hidden_size // num_attention_heads``.
        intermediate_size: Feed-forward width.
        gated_mlp: SwiGLU-style gated feed-forward (3 matrices, as Llama) if True, else the classic
            2-matrix feed-forward of the paper's Transformer (use ``hidden_act="gelu"``).
        hidden_act: Feed-forward activation.
        max_position_embeddings: Longest sequence the model is meant for (RoPE has no hard limit).
        rope_theta: RoPE base.
        rms_norm_eps: RMSNorm epsilon.
        attention_dropout: Dropout on attention probabilities.
        hidden_dropout: Dropout on the residual branches and embeddings.
        attention_bias: Biases in the attention projections.
        initializer_range: Std of the normal weight initialisation.
        use_cache: Return a KV cache from forward (GAR).
    """

    num_phonemes: int = 128
    codebook_size: int = 1024
    num_codebooks: int = 8
    sampling_rate: int = 24000
    frame_rate: float = 75.0
    hidden_size: int = 256
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int | None = None
    head_dim: int | None = None
    intermediate_size: int = 1024
    gated_mlp: bool = True
    hidden_act: str = "silu"
    max_position_embeddings: int = 4096
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-6
    attention_dropout: float = 0.0
    hidden_dropout: float = 0.0
    attention_bias: bool = False
    initializer_range: float = 0.02
    use_cache: bool = True

    def __post_init__(self, **kwargs) -> None:
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.head_dim is None:
            if self.num_attention_heads <= 0 or self.hidden_size % self.num_attention_heads:
                raise ValueError(
                    f"hidden_size ({self.hidden_size}) must be a positive multiple of num_attention_heads "
                    f"({self.num_attention_heads}), or set head_dim explicitly."
                )
            self.head_dim = self.hidden_size // self.num_attention_heads
        self._validate_shared()
        super().__post_init__(**kwargs)

    def _validate_shared(self) -> None:
        positive = {
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "intermediate_size": self.intermediate_size,
            "num_codebooks": self.num_codebooks,
            "sampling_rate": self.sampling_rate,
            "frame_rate": self.frame_rate,
        }
        for name, value in positive.items():
            if value is None or value <= 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads ({self.num_attention_heads}) must be a multiple of num_key_value_heads "
                f"({self.num_key_value_heads})."
            )
        if self.head_dim % 2:
            raise ValueError(f"head_dim must be even for rotary embeddings, got {self.head_dim}")
        for name in ("attention_dropout", "hidden_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        # TokenSpace validates num_phonemes and codebook_size with its own messages.
        TokenSpace(self.num_phonemes, self.codebook_size)

    @property
    def token_space(self) -> TokenSpace:
        """The flat id space (specials, phonemes, first-codebook codes)."""
        return TokenSpace(self.num_phonemes, self.codebook_size)

    @property
    def vocab_size(self) -> int:
        """Size of the flat GAR id space: 4 specials + phonemes + codebook size."""
        return self.token_space.vocab_size

    # Fixed by the token space; exposed under the names transformers looks for.
    @property
    def pad_token_id(self) -> int:
        return TokenSpace.PAD

    @property
    def bos_token_id(self) -> int:
        return TokenSpace.BOS

    @property
    def eos_token_id(self) -> int:
        return TokenSpace.EOS

    @property
    def eop_token_id(self) -> int:
        return TokenSpace.EOP


class EllaVConfig(EllaVBaseConfig):
    """Configuration of the ELLA-V GAR (generalized autoregressive) decoder, which predicts the first
    codec codebook interleaved with phoneme tokens. The same class configures the VALL-E AR baseline
    (``layout="vall-e"``) and the paper's two ablations: ``global_advance=False`` (without global
    advance) and ``inline_phonemes=False`` (without in-sequence phonemes).

    Args:
        layout: ``"ella-v"`` (interleaved phonemes, EOP) or ``"vall-e"`` (phoneme prefix, then codes).
        global_advance: Put the whole phoneme sequence before BOS.
        local_advance: Frames by which EOP and the next phoneme are moved before each phoneme
            boundary (ELLA-V's "local advance"; the paper gives no value). ``None`` =
            ``DEFAULT_LOCAL_ADVANCE`` (1 frame) for ``ella-v`` and 0 for ``vall-e``; 0 turns it off
            (a variant, not one of the paper's ablations).
        inline_phonemes: Put each phoneme token before its frames after BOS; ``False`` is the
            paper's "without in-sequence phonemes" ablation (EOPs stay; needs ``global_advance``).
        max_frames_per_phone: Frame cap per phoneme at inference (EOP is forced beyond it);
            ``None`` = 0.4 s at ``frame_rate``, the paper's value.
        prefix_bidirectional_attention: Let the phoneme prefix attend to itself bidirectionally
            (the acoustic part stays causal).
        decode_weight_dtype: ``"float16"`` (or ``"bfloat16"``) lets ``generate()`` on CPU run its
            decoding steps' matrix products from half-precision copies of the float32 weights
            (activations stay float32; :mod:`~ella_v_hf.modeling.decode_weights`): several times
            faster per product on a CPU, with logits within about 1e-3 relative, so sampled
            sequences can differ. ``None`` (default): float32 throughout. Forward calls outside
            ``generate()``, training and the NAR are never affected.
        text_dropout: Chance per training row that all its phoneme tokens (prefix and in-sequence)
            are replaced by ``PAD``, whose embedding is zero: the model also learns the
            text-unconditional distribution that classifier-free guidance (``guidance_scale`` in
            ``generate()``) contrasts with. ``0`` (the paper): no guidance. Recorded by the trainer.
        kwargs: The shared fields of :class:`EllaVBaseConfig`.

    Example:

    ```python
    >>> from ella_v_hf import EllaVConfig, EllaVForCausalLM
    >>> config = EllaVConfig(num_phonemes=80, codebook_size=256, hidden_size=64, num_hidden_layers=2)
    >>> model = EllaVForCausalLM(config)
    ```
    """

    model_type = "ella_v"

    layout: str = "ella-v"
    global_advance: bool = True
    local_advance: int | None = None
    inline_phonemes: bool = True
    max_frames_per_phone: int | None = None
    prefix_bidirectional_attention: bool = False
    text_dropout: float = 0.0
    decode_weight_dtype: str | None = None

    def __post_init__(self, **kwargs) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"Unknown layout {self.layout!r}; expected one of {LAYOUTS}")
        if self.local_advance is None:
            self.local_advance = DEFAULT_LOCAL_ADVANCE if self.layout == "ella-v" else 0
        if self.max_frames_per_phone is None:
            self.max_frames_per_phone = max(1, round(PAPER_MAX_PHONE_SECONDS * self.frame_rate))
        if self.max_frames_per_phone < 1:
            raise ValueError(f"max_frames_per_phone must be >= 1, got {self.max_frames_per_phone}")
        if not 0.0 <= self.text_dropout < 1.0:
            raise ValueError(f"text_dropout must lie in [0, 1), got {self.text_dropout}")
        decode_weight_dtype(self.decode_weight_dtype)  # validates the name
        if self.prefix_bidirectional_attention and not self.global_advance:
            raise ValueError("prefix_bidirectional_attention=True needs global_advance=True (a phoneme prefix).")
        self.layout_spec  # noqa: B018 - validates layout / global_advance / local_advance / inline_phonemes together
        super().__post_init__(**kwargs)

    @property
    def layout_spec(self) -> LayoutSpec:
        """The :class:`LayoutSpec` this model's sequences follow."""
        return LayoutSpec(
            layout=self.layout,
            global_advance=self.global_advance,
            local_advance=self.local_advance,
            inline_phonemes=self.inline_phonemes,
        )


class EllaVNARConfig(EllaVBaseConfig):
    """Configuration of the VALL-E-style non-autoregressive model that predicts codebooks 2..K.

    The NAR sees the phoneme prefix (same phoneme ids as the GAR) followed by the acoustic frames,
    each frame embedded as the sum of its codes in codebooks ``< j``, plus an embedding of ``j``;
    attention is bidirectional and one output head per codebook ``j >= 2`` predicts codebook ``j``.
    Frames of an acoustic prompt are embedded with all ``K`` codebooks.

    Args:
        frame_phonemes: Also add, to every frame, an embedding of the phoneme that frame is aligned
            to (an extension, not in the paper; off by default). The NAR then no longer has to infer
            the alignment from codebook 0, which a small model trained briefly does poorly. It
            needs the alignment at inference: ELLA-V's GAR sequence spells it out (each phoneme
            token owns the frames up to its EOP), so only ELLA-V checkpoints can use it.
        kwargs: The shared fields of :class:`EllaVBaseConfig` (``num_codebooks`` must be >= 2).
    """

    model_type = "ella_v_nar"

    frame_phonemes: bool = False

    def __post_init__(self, **kwargs) -> None:
        super().__post_init__(**kwargs)
        if self.num_codebooks < 2:
            raise ValueError(f"The NAR predicts codebooks 2..K and needs num_codebooks >= 2, got {self.num_codebooks}")


__all__ = ["DEFAULT_LOCAL_ADVANCE", "EllaVBaseConfig", "EllaVConfig", "EllaVNARConfig", "PAPER_MAX_PHONE_SECONDS"]
