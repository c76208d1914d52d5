"""ELLA-V models: the GAR decoder (first codebook, interleaved with phonemes) and the NAR model
(codebooks 2..K), as transformers ``PreTrainedModel``s.

Both are Llama-style Transformers (RMSNorm, RoPE, optional SwiGLU, SDPA through
``ALL_ATTENTION_FUNCTIONS``). This file only imports ``torch``, ``transformers`` and its siblings
(relatively), so ``save_pretrained`` can ship it as Hub remote code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationConfig, GenerationMixin, PreTrainedModel
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache, DynamicCache
from transformers.masking_utils import create_bidirectional_mask, create_causal_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast
from transformers.utils import ModelOutput
from transformers.utils.deprecation import deprecate_kwarg
from transformers.utils.generic import can_return_tuple

from .configuration_ella_v import EllaVBaseConfig, EllaVConfig, EllaVNARConfig
from .decode_weights import HalfDecodeMixin, decode_weight_dtype, half_precision_decoding
from .decoding_options import check_guidance_scale
from .jump_forward import forced_token_candidates
from .loading import StrictLoadingMixin
from .sequence_layout import IGNORE_INDEX, TokenSpace
from .transformers_compat import attention_function, jump_forward_available, without_remote_code


# ---------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------
class EllaVRMSNorm(nn.Module):
    """RMSNorm computed in float32."""

    def __init__(self, hidden_size: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:  # [..., H] -> [..., H]
        if hidden_states.dtype == torch.float32 and self.weight.dtype == torch.float32:
            return F.rms_norm(hidden_states, self.weight.shape, self.weight, self.eps)  # one fused call instead of five
        dtype = hidden_states.dtype
        x = hidden_states.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


class EllaVRotaryEmbedding(nn.Module):
    """Rotary position embedding. Frequencies are recomputed per call (head_dim/2 values), so no
    buffer can be left uninitialised by meta-device loading."""

    def __init__(self, config: EllaVBaseConfig) -> None:
        super().__init__()
        self.head_dim = config.head_dim
        self.base = config.rope_theta

    def forward(self, x: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Args: x (for dtype/device), position_ids ``[B, L]``. Returns cos, sin ``[B, L, head_dim]``."""
        exponent = torch.arange(0, self.head_dim, 2, device=x.device, dtype=torch.float32) / self.head_dim
        inv_freq = 1.0 / (self.base**exponent)  # [D/2]
        freqs = position_ids[..., None].float() * inv_freq  # [B, L, D/2]
        emb = torch.cat((freqs, freqs), dim=-1)  # [B, L, D]
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE on heads ``x`` ``[B, h, L, D]`` with cos/sin ``[B, 1, L, D]``."""
    return x * cos + _rotate_half(x) * sin


def apply_rotary(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """q ``[B, h, L, D]``, k ``[B, h_kv, L, D]``, cos/sin ``[B, L, D]``."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return _rotate(q, cos, sin), _rotate(k, cos, sin)


def _repeat_kv(x: torch.Tensor, groups: int) -> torch.Tensor:
    """``[B, h_kv, L, D]`` -> ``[B, h_kv * groups, L, D]``."""
    if groups == 1:
        return x
    b, h, length, d = x.shape
    return x[:, :, None].expand(b, h, groups, length, d).reshape(b, h * groups, length, d)


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference attention (``attn_implementation="eager"``). Returns ``[B, L, h, D]`` and weights."""
    key = _repeat_kv(key, module.num_key_value_groups)
    value = _repeat_kv(value, module.num_key_value_groups)
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling  # [B, h, Lq, Lk]
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            weights = weights.masked_fill(~attention_mask, torch.finfo(weights.dtype).min)
        else:
            weights = weights + attention_mask
    elif module.is_causal and query.shape[2] > 1:
        lq, lk = query.shape[2], key.shape[2]
        causal = torch.ones(lq, lk, dtype=torch.bool, device=query.device).tril(lk - lq)
        weights = weights.masked_fill(~causal, torch.finfo(weights.dtype).min)
    weights = F.softmax(weights, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = F.dropout(weights, p=dropout, training=module.training)
    out = torch.matmul(weights, value).transpose(1, 2).contiguous()
    return out, weights


class EllaVAttention(HalfDecodeMixin, nn.Module):
    """Multi-head (grouped-query) self-attention with RoPE and an optional KV cache.

    During ``generate()`` with ``decode_weight_dtype`` set, decoding steps project q, k and v with
    one half-precision matrix (:mod:`.decode_weights`) and rotate q and k together.
    """

    def __init__(self, config: EllaVBaseConfig, layer_idx: int, is_causal: bool = True) -> None:
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.is_causal = is_causal
        self.head_dim = config.head_dim
        # Plain attributes: a transformers config's attribute lookup costs microseconds, paid per decoding step.
        self.num_heads, self.num_key_value_heads = config.num_attention_heads, config.num_key_value_heads
        self.num_key_value_groups = config.num_attention_heads // config.num_key_value_heads
        self.scaling = self.head_dim**-0.5
        bias = config.attention_bias
        self.q_proj = nn.Linear(config.hidden_size, config.num_attention_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(config.hidden_size, config.num_key_value_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(config.hidden_size, config.num_key_value_heads * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(config.num_attention_heads * self.head_dim, config.hidden_size, bias=bias)

    def forward(
        self,
        hidden_states: torch.Tensor,  # [B, L, H]
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
        attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        **kwargs,
    ) -> torch.Tensor:
        shape = (*hidden_states.shape[:-1], -1, self.head_dim)
        qkv = self.half_linear("qkv", hidden_states)  # [B, L, (h + 2 h_kv) D] in decoding steps, else None
        if qkv is not None:
            qkv = qkv.view(shape).transpose(1, 2)  # [B, h + 2 h_kv, L, D]
            heads, kv_heads = self.num_heads, self.num_key_value_heads
            cos, sin = (t.unsqueeze(1) for t in position_embeddings)
            qk = _rotate(qkv[:, : heads + kv_heads], cos, sin)  # q and k rotated in one pass
            q, k, v = qk[:, :heads], qk[:, heads:], qkv[:, heads + kv_heads :]
        else:
            q = self.q_proj(hidden_states).view(shape).transpose(1, 2)  # [B, h, L, D]
            k = self.k_proj(hidden_states).view(shape).transpose(1, 2)  # [B, h_kv, L, D]
            v = self.v_proj(hidden_states).view(shape).transpose(1, 2)
            q, k = apply_rotary(q, k, *position_embeddings)
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx)
        attention: Callable = attention_function(self.config, eager_attention_forward)
        out, _ = attention(
            self,
            q,
            k,
            v,
            attention_mask,
            dropout=self.config.attention_dropout if self.training else 0.0,
            scaling=self.scaling,
            **kwargs,
        )
        out = out.reshape(*hidden_states.shape[:-1], -1).contiguous()  # [B, L, h D]
        projected = self.half_linear("o", out)
        return self.o_proj(out) if projected is None else projected

    def half_decode_groups(self) -> dict[str, list[nn.Linear]]:
        return {"qkv": [self.q_proj, self.k_proj, self.v_proj], "o": [self.o_proj]}


class EllaVMLP(HalfDecodeMixin, nn.Module):
    """Feed-forward: gated (SwiGLU, 3 matrices) or classic (2 matrices). Decoding steps may use one
    half-precision gate/up matrix (:mod:`.decode_weights`)."""

    def __init__(self, config: EllaVBaseConfig) -> None:
        super().__init__()
        self.gated = config.gated_mlp
        if self.gated:
            self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)
        self.act_fn = ACT2FN[config.hidden_act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, L, H] -> [B, L, H]
        up = self.half_linear("up", x)  # [B, L, (2) I] in decoding steps, else None
        if up is None:
            hidden = self.act_fn(self.gate_proj(x)) * self.up_proj(x) if self.gated else self.act_fn(self.up_proj(x))
        elif self.gated:
            gate, up = up.chunk(2, dim=-1)
            hidden = self.act_fn(gate) * up
        else:
            hidden = self.act_fn(up)
        down = self.half_linear("down", hidden)
        return self.down_proj(hidden) if down is None else down

    def half_decode_groups(self) -> dict[str, list[nn.Linear]]:
        up = [self.gate_proj, self.up_proj] if self.gated else [self.up_proj]
        return {"up": up, "down": [self.down_proj]}


class EllaVDecoderLayer(GradientCheckpointingLayer):
    """Pre-norm Transformer layer: ``x + Attn(Norm(x))``, then ``x + MLP(Norm(x))``."""

    def __init__(self, config: EllaVBaseConfig, layer_idx: int, is_causal: bool = True) -> None:
        super().__init__()
        self.self_attn = EllaVAttention(config, layer_idx, is_causal=is_causal)
        self.mlp = EllaVMLP(config)
        self.input_layernorm = EllaVRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = EllaVRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout)

    def forward(
        self,
        hidden_states: torch.Tensor,  # [B, L, H]
        attention_mask: torch.Tensor | None = None,
        position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
        cache: Cache | None = None,
        **kwargs,
    ) -> torch.Tensor:
        attn = self.self_attn(
            self.input_layernorm(hidden_states),
            position_embeddings=position_embeddings,
            attention_mask=attention_mask,
            cache=cache,
            **kwargs,
        )
        hidden_states = hidden_states + self.dropout(attn)
        return hidden_states + self.dropout(self.mlp(self.post_attention_layernorm(hidden_states)))


def text_free_guidance_scores(logits: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """Classifier-free guidance on the text: ``[2B, ..., V]`` logits (the sequences, then their
    text-free copies) -> ``[B, ..., V]`` scores ``log p_u + w (log p_c - log p_u)`` in float32."""
    conditional, unconditional = logits.float().log_softmax(-1).chunk(2)
    return guidance_scale * (conditional - unconditional) + unconditional


def positions_from_mask(attention_mask: torch.Tensor | None, query_length: int, past_length: int, device) -> torch.Tensor:
    """Position ids ``[B or 1, query_length]`` that skip padding.

    Args:
        attention_mask: ``[B, past_length + query_length]`` (1 = token, 0 = padding) or None.
        query_length: Tokens in this forward call.
        past_length: Tokens already in the KV cache.
    """
    if attention_mask is None:
        return torch.arange(past_length, past_length + query_length, device=device)[None]
    positions = attention_mask.long().cumsum(-1) - 1
    return positions.clamp(min=0)[:, -query_length:]


# ---------------------------------------------------------------------------------------------
# Pre-trained model base
# ---------------------------------------------------------------------------------------------
class EllaVPreTrainedModel(StrictLoadingMixin, PreTrainedModel):
    """Weight init, gradient checkpointing, attention backends and Hub remote-code export."""

    config_class = EllaVBaseConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["EllaVDecoderLayer"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    #: Auto classes (besides the one the class is registered for) written into ``auto_map`` on save.
    _remote_auto_map: dict[str, str] = {}

    def save_pretrained(self, save_directory, *args, remote_code: bool = True, **kwargs):
        """Save weights (safetensors only) and config, and by default the Hub remote code.

        With ``remote_code=True`` transformers copies this model's module and every module it imports
        relatively (``custom_object_save``) beside the weights, and ``auto_map`` gets every Auto class
        the checkpoint loads with (e.g. both ``AutoModel`` and ``AutoModelForCausalLM`` for the GAR),
        so ``trust_remote_code=True`` works without our package. ``remote_code=False`` writes config
        and weights only (the bundled demos: they load through the installed classes).
        """
        if not kwargs.get("safe_serialization", True):
            raise ValueError("ella-v-hf saves safetensors only (safe_serialization=False is not supported).")
        if not remote_code:
            # transformers copies code for classes registered for an Auto class (a class-level
            # check), so unregister the model's and config's classes for this call.
            if hasattr(self.config, "auto_map"):
                del self.config.auto_map
            with without_remote_code((self, self.config)):
                return super().save_pretrained(save_directory, *args, **kwargs)
        auto_map = dict(getattr(self.config, "auto_map", None) or {})
        model_module = type(self).__module__.rsplit(".", 1)[-1]
        config_module = type(self.config).__module__.rsplit(".", 1)[-1]
        auto_map.setdefault("AutoConfig", f"{config_module}.{type(self.config).__name__}")
        for auto_class, class_name in self._remote_auto_map.items():
            auto_map.setdefault(auto_class, f"{model_module}.{class_name}")
        self.config.auto_map = auto_map
        return super().save_pretrained(save_directory, *args, **kwargs)

    def run_layers(
        self,
        embeds: torch.Tensor,  # [B, L, H]
        mask: torch.Tensor | None,
        position_ids: torch.LongTensor,  # [B or 1, L]
        cache: Cache | None = None,
        **kwargs,
    ) -> torch.Tensor:
        """Embedding dropout, the Transformer layers with RoPE, final norm: ``[B, L, H] -> [B, L, H]``.
        Shared by the GAR stack and the NAR (models with ``dropout``, ``rotary_emb``, ``layers``, ``norm``)."""
        hidden_states = self.dropout(embeds)
        position_embeddings = self.rotary_emb(hidden_states, position_ids)
        for layer in self.layers:
            hidden_states = layer(hidden_states, attention_mask=mask, position_embeddings=position_embeddings, cache=cache, **kwargs)
        return self.norm(hidden_states)


# ---------------------------------------------------------------------------------------------
# GAR
# ---------------------------------------------------------------------------------------------
class EllaVModel(EllaVPreTrainedModel):
    """The GAR's decoder stack (no output head): flat-id embeddings, causal Transformer layers.

    The optional bidirectional phoneme prefix (``config.prefix_bidirectional_attention``) is found
    per row as the tokens before the first BOS of the input (prefill / no-cache calls only: with a
    cache the prefix is already encoded and every later query is causal anyway).
    """

    config_class = EllaVConfig
    _remote_auto_map = {"AutoModel": "EllaVModel"}
    # The decoder stack alone loads from a causal-LM checkpoint: its output head is not part of it.
    _keys_to_ignore_on_load_unexpected = [r"^lm_head\."]

    def __init__(self, config: EllaVConfig) -> None:
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=TokenSpace.PAD)
        self.layers = nn.ModuleList([EllaVDecoderLayer(config, i) for i in range(config.num_hidden_layers)])
        self.norm = EllaVRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = EllaVRotaryEmbedding(config)
        self.dropout = nn.Dropout(config.hidden_dropout)
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embed_tokens = value

    @staticmethod
    def _prefix_mask_function(input_ids: torch.LongTensor) -> Callable:
        """``or_mask_function`` letting the tokens before each row's first BOS see each other.

        A row without BOS gets no bidirectional block (plain causal attention).
        """
        is_bos = input_ids == TokenSpace.BOS  # [B, L]
        first_bos = torch.where(is_bos.any(-1), is_bos.int().argmax(-1), 0)  # [B]

        def prefix(batch_idx, head_idx, q_idx, kv_idx):
            end = first_bos[batch_idx]
            return (q_idx < end) & (kv_idx < end)

        return prefix

    @deprecate_kwarg("past_key_values", "6.0.0", new_name="cache")
    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,  # [B, L]
        attention_mask: torch.Tensor | None = None,  # [B, past + L]
        position_ids: torch.LongTensor | None = None,  # [B, L]
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,  # [B, L, H]
        use_cache: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPast:
        """Run the decoder stack.

        Returns:
            ``BaseModelOutputWithPast`` with ``last_hidden_state`` ``[B, L, H]`` and ``cache``.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of input_ids or inputs_embeds.")
        if inputs_embeds is None:
            # The range check reads tensor values: eager only (under torch.compile it would break
            # the graph at every decoding step; generate() feeds tokens the model itself drew).
            checked = not torch.compiler.is_compiling() and input_ids.numel() and input_ids.device.type != "meta"
            if checked and (input_ids.min() < 0 or input_ids.max() >= self.config.vocab_size):
                raise ValueError(
                    f"input_ids must lie in [0, {self.config.vocab_size}) (the flat ELLA-V token space); "
                    f"got values in [{int(input_ids.min())}, {int(input_ids.max())}]."
                )
            inputs_embeds = self.embed_tokens(input_ids)
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if use_cache and cache is None:
            cache = DynamicCache(config=self.config)
        past_length = cache.get_seq_length() if cache is not None else 0
        if position_ids is None:
            position_ids = positions_from_mask(attention_mask, inputs_embeds.shape[1], past_length, inputs_embeds.device)

        or_mask = None
        if self.config.prefix_bidirectional_attention and past_length == 0 and inputs_embeds.shape[1] > 1:
            if input_ids is None:
                raise ValueError("prefix_bidirectional_attention needs input_ids (to find the phoneme prefix).")
            or_mask = self._prefix_mask_function(input_ids)
        mask = create_causal_mask(
            config=self.config,
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            cache=cache,
            position_ids=position_ids,
            or_mask_function=or_mask,
        )
        hidden_states = self.run_layers(inputs_embeds, mask, position_ids, cache=cache, **kwargs)
        return BaseModelOutputWithPast(last_hidden_state=hidden_states, cache=cache if use_cache else None)


class EllaVForCausalLM(HalfDecodeMixin, EllaVPreTrainedModel, GenerationMixin):
    """The ELLA-V GAR (or VALL-E AR) model: decoder stack + output head over the flat id space.

    The loss counts only targets that are acoustic, EOP or EOS tokens, whatever ``labels`` holds
    at other positions: phoneme, BOS and PAD targets are forced at inference and never learned.

    Example:

    ```python
    >>> import torch
    >>> from ella_v_hf import EllaVConfig, EllaVForCausalLM
    >>> from ella_v_hf.modeling import build_gar_sequence
    >>> config = EllaVConfig(num_phonemes=10, codebook_size=16, hidden_size=32, num_hidden_layers=2)
    >>> model = EllaVForCausalLM(config)
    >>> seq = build_gar_sequence([3, 5], [2, 3], [1, 2, 3, 4, 5], config.token_space, config.layout_spec)
    >>> out = model(torch.tensor([seq.input_ids]), labels=torch.tensor([seq.labels]))
    >>> out.logits.shape  # [batch, length, vocab]
    torch.Size([1, 13, 30])
    ```
    """

    config_class = EllaVConfig
    _remote_auto_map = {"AutoModel": "EllaVModel", "AutoModelForCausalLM": "EllaVForCausalLM"}

    def __init__(self, config: EllaVConfig) -> None:
        super().__init__(config)
        self.model = EllaVModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()
        self.generation_config = GenerationConfig(
            bos_token_id=TokenSpace.BOS, eos_token_id=TokenSpace.EOS, pad_token_id=TokenSpace.PAD
        )

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.embed_tokens = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value

    def prepare_inputs_for_generation(
        self,
        input_ids: torch.LongTensor,  # [B, L]
        next_sequence_length: int | None = None,
        attention_mask: torch.Tensor | None = None,  # [B, L]
        text_free_rows: bool = False,
        text_free_guidance: float | None = None,
        **kwargs,
    ) -> dict[str, Any]:
        """The stock inputs; with ``text_free_rows=True`` and ``text_free_guidance=w`` (classifier-free
        guidance), ``2B`` rows.

        Rows ``B..2B-1`` are the text-free copies of the new tokens (phonemes replaced by ``PAD``,
        :meth:`TokenSpace.without_text`), with the same attention mask and positions, so both
        branches of guidance run in one forward and one cache, and the forward returns the ``B``
        rows' guided scores (so every decoding loop, assisted decoding included, sees ``B`` rows).
        """
        if text_free_rows != (text_free_guidance is not None):
            raise ValueError(
                "classifier-free guidance takes both text_free_rows=True (the text-free copies) and text_free_guidance=w "
                "(their weight)"
            )
        if text_free_guidance is not None:
            kwargs["text_free_guidance"] = check_guidance_scale(text_free_guidance, allow_none=False)
        if text_free_rows:
            if kwargs.get("inputs_embeds") is not None:
                raise ValueError("text_free_rows needs input_ids (their phoneme tokens are blanked), not inputs_embeds.")
            new = input_ids if next_sequence_length is None else input_ids[:, -next_sequence_length:]  # [B, n]
            input_ids, next_sequence_length = torch.cat([new, self.config.token_space.without_text(new)]), None  # [2B, n]
            if attention_mask is not None:
                attention_mask = attention_mask.repeat(2, 1)  # [2B, L]
            if kwargs.get("position_ids") is not None:
                kwargs["position_ids"] = kwargs["position_ids"].repeat(2, 1)
        return super().prepare_inputs_for_generation(
            input_ids, next_sequence_length=next_sequence_length, attention_mask=attention_mask, **kwargs
        )

    def half_decode_groups(self) -> dict[str, list[nn.Linear]]:
        return {"head": [self.lm_head]}

    def generate(self, *args, jump_forward: bool = False, **kwargs):
        """Stock ``GenerationMixin.generate``; with ``config.decode_weight_dtype`` set (CPU, float32
        weights), its decoding steps read half-precision copies of the weights
        (:mod:`.decode_weights`: a decoding step on a CPU is bound by its matrix-vector products).
        Products with more than ``MAX_DECODE_ROWS`` rows (the prefill's layers, large batches) stay
        float32.

        Args:
            jump_forward: Decode the tokens the phoneme-advance rule forces (a phoneme after each
                EOP, EOS after the last, EOP at the frame cap) in the same forward as the token before
                them, through generate()'s stock assisted-decoding loop (:mod:`.jump_forward`). Needs
                an :class:`~.generation_ella_v.EllaVPhonemeAdvanceLogitsProcessor` in
                ``logits_processor`` and one sequence (``batch_size = 1``); with classifier-free
                guidance, pass ``text_free_guidance`` (guidance inside the forward) rather than the
                guidance processor, whose ``2B`` rows of logits assisted decoding cannot take.
                It relies on transformers' private assisted-decoding hooks: on a transformers
                release it was not verified on (:mod:`.transformers_compat`), it warns once and
                decodes step by step.
        """
        with half_precision_decoding(self, decode_weight_dtype(self.config.decode_weight_dtype)):
            if not jump_forward or not jump_forward_available():
                return super().generate(*args, **kwargs)
            with forced_token_candidates(self, kwargs):
                return super().generate(*args, **kwargs)

    def _get_candidate_generator(self, *args, **kwargs):
        """generate()'s assisted-decoding hook: the forced-token candidates of a ``jump_forward`` call."""
        candidates = getattr(self, "_forced_token_candidates", None)
        return candidates if candidates is not None else super()._get_candidate_generator(*args, **kwargs)

    def masked_labels(self, labels: torch.LongTensor) -> torch.LongTensor:
        """``labels`` with every non-target position (anything but acoustic/EOP/EOS) set to -100."""
        return labels.masked_fill(~self.config.token_space.loss_target_mask(labels), IGNORE_INDEX)

    @deprecate_kwarg("past_key_values", "6.0.0", new_name="cache")
    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,  # [B, L]
        attention_mask: torch.Tensor | None = None,  # [B, past + L]
        position_ids: torch.LongTensor | None = None,  # [B, L]
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,  # [B, L, H]
        labels: torch.LongTensor | None = None,  # [B, L], aligned with input_ids (shifted here)
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        text_free_guidance: float | None = None,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        """Forward pass.

        Args:
            labels: Targets aligned with ``input_ids`` (as built by ``build_gar_sequence``); the
                token at position ``t+1`` is predicted from position ``t``. Only acoustic/EOP/EOS
                targets count. ``num_items_in_batch`` (a kwarg the Trainer passes) normalises the
                loss over gradient-accumulation steps.
            logits_to_keep: Compute logits for the last ``n`` positions only (0 = all).
            text_free_guidance: Classifier-free guidance weight ``w`` for ``2B`` input rows (the
                sequences, then their text-free copies, as ``prepare_inputs_for_generation(
                text_free_rows=True)`` builds them): the ``B`` rows of guided scores come back,
                ``log p_u + w (log p_c - log p_u)`` per position (:func:`text_free_guidance_scores`;
                pass it to ``generate()`` with ``text_free_rows=True``: every decoding method then
                sees ``B`` rows).

        Returns:
            ``CausalLMOutputWithPast`` with ``logits`` ``[B, L or n, vocab_size]`` (float32 when a
            loss is computed or with ``text_free_guidance``) and ``loss`` (mean cross-entropy over
            counted targets).
        """
        num_items_in_batch = kwargs.pop("num_items_in_batch", None)
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            **kwargs,
        )
        hidden_states = outputs.last_hidden_state
        if isinstance(logits_to_keep, int) and logits_to_keep > 0:
            hidden_states = hidden_states[:, -logits_to_keep:]
        elif isinstance(logits_to_keep, torch.Tensor):
            hidden_states = hidden_states[:, logits_to_keep]
        logits = self.half_linear("head", hidden_states)  # decoding steps under half_precision_decoding
        if logits is None:
            logits = self.lm_head(hidden_states)
        if text_free_guidance is not None:
            if labels is not None or logits.shape[0] % 2:
                raise ValueError("text_free_guidance takes 2B rows (sequences, then their text-free copies) and no labels.")
            logits = text_free_guidance_scores(logits, text_free_guidance)
        loss = None
        if labels is not None:
            loss = self._loss(logits, labels, num_items_in_batch)
        return CausalLMOutputWithPast(loss=loss, logits=logits, cache=outputs.cache)

    def distillation_loss(
        self,
        logits: torch.Tensor,  # [B, L, V] this model's
        teacher_logits: torch.Tensor,  # [B, L, V] a teacher's, on the same input_ids
        labels: torch.LongTensor,  # [B, L], as for forward()
    ) -> torch.Tensor:
        """Token-level knowledge distillation: KL(teacher || this model) of the next-token
        distributions, averaged over the positions the cross-entropy counts (acoustic, EOP and EOS
        targets; Hinton et al. 2015 at temperature 1; a same-size teacher makes it a "born-again"
        student, Furlanello et al. 2018).

        Raises:
            ValueError: The teacher's logits have another shape (another vocabulary or sequence).
        """
        if teacher_logits.shape != logits.shape:
            raise ValueError(f"teacher logits {tuple(teacher_logits.shape)} do not match the student's {tuple(logits.shape)}")
        counted = self._next_token_targets(labels, logits.device) != IGNORE_INDEX  # [B, L-1]
        student = F.log_softmax(logits[:, :-1][counted].float(), dim=-1)  # [N, V]
        teacher = F.log_softmax(teacher_logits[:, :-1][counted].float(), dim=-1)  # [N, V]
        kl = F.kl_div(student, teacher, log_target=True, reduction="sum")
        return kl / counted.sum().clamp(min=1)

    def _next_token_targets(self, labels: torch.LongTensor, device: torch.device) -> torch.LongTensor:
        """The target of each position ``0..L-2`` (labels shifted left), -100 where nothing is counted."""
        return self.masked_labels(labels.to(device))[:, 1:]  # [B, L-1]

    def _loss(self, logits: torch.Tensor, labels: torch.LongTensor, num_items_in_batch=None) -> torch.Tensor:
        targets = self._next_token_targets(labels, logits.device)  # [B, L-1]
        logits = logits[:, :-1].float()  # [B, L-1, V]
        summed = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
        )
        if num_items_in_batch is None:
            num_items_in_batch = (targets != IGNORE_INDEX).sum().clamp(min=1)
        if torch.is_tensor(num_items_in_batch):
            num_items_in_batch = num_items_in_batch.to(summed.device)
        return summed / num_items_in_batch


# ---------------------------------------------------------------------------------------------
# NAR
# ---------------------------------------------------------------------------------------------
@dataclass
class EllaVNAROutput(ModelOutput):
    """Output of :class:`EllaVNARModel`.

    Args:
        loss: Mean cross-entropy over the counted frames (when ``labels`` are given).
        logits: ``[B, T, codebook_size]`` scores for the requested codebook at every frame.
        last_hidden_state: ``[B, Lp + T, H]`` final hidden states (phoneme prefix, then frames).
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    last_hidden_state: torch.FloatTensor | None = None


class EllaVNARModel(EllaVPreTrainedModel):
    """VALL-E-style non-autoregressive model for codebooks 2..K.

    Input sequence per row: ``[phoneme prefix (Lp)] [acoustic frames (T)]``. Frame ``t`` is embedded
    as ``sum_{c < j} E_c(codes[c, t])`` for the requested codebook ``j`` (0-based, ``1 <= j < K``);
    frames of an acoustic prompt (``t < prompt_frames``) use all ``K`` codebooks. A learned
    codebook-index embedding is added to every position; attention is bidirectional; head ``j``
    predicts ``codes[j, t]``. With ``config.frame_phonemes`` frame ``t`` also gets an embedding of
    its aligned phoneme (``frame_phoneme_ids``).
    """

    config_class = EllaVNARConfig
    _remote_auto_map = {"AutoModel": "EllaVNARModel"}

    def __init__(self, config: EllaVNARConfig) -> None:
        super().__init__(config)
        space = config.token_space
        # Specials + phonemes share the GAR's ids (acoustic ids are embedded per codebook instead).
        self.phoneme_embeddings = nn.Embedding(space.acoustic_offset, config.hidden_size, padding_idx=TokenSpace.PAD)
        self.code_embeddings = nn.ModuleList(
            [nn.Embedding(config.codebook_size, config.hidden_size) for _ in range(config.num_codebooks)]
        )
        self.codebook_index_embeddings = nn.Embedding(config.num_codebooks, config.hidden_size)
        # Optional (config.frame_phonemes): the aligned phoneme of every frame, same ids as the prefix.
        self.frame_phoneme_embeddings = (
            nn.Embedding(space.acoustic_offset, config.hidden_size, padding_idx=TokenSpace.PAD) if config.frame_phonemes else None
        )
        self.layers = nn.ModuleList(
            [EllaVDecoderLayer(config, i, is_causal=False) for i in range(config.num_hidden_layers)]
        )
        self.norm = EllaVRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = EllaVRotaryEmbedding(config)
        self.heads = nn.ModuleList(
            [nn.Linear(config.hidden_size, config.codebook_size, bias=False) for _ in range(config.num_codebooks - 1)]
        )
        self.dropout = nn.Dropout(config.hidden_dropout)
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.phoneme_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.phoneme_embeddings = value

    def _embed_frames(
        self,
        codes: torch.LongTensor,  # [B, K', T]
        codebook_index: torch.LongTensor,  # [B]
        prompt_frames: torch.LongTensor,  # [B]
    ) -> torch.Tensor:  # [B, T, H]
        batch, available, frames = codes.shape
        safe = codes.clamp(min=0)
        time = torch.arange(frames, device=codes.device)[None]  # [1, T]
        in_prompt = time < prompt_frames[:, None]  # [B, T]
        embedded = torch.zeros(batch, frames, self.config.hidden_size, device=codes.device, dtype=self.dtype)
        for c in range(available):
            use = (c < codebook_index)[:, None] | in_prompt  # [B, T]
            embedded = embedded + self.code_embeddings[c](safe[:, c]) * use[..., None].to(embedded.dtype)
        return embedded

    def _check_flat_phoneme_ids(self, name: str, ids: torch.LongTensor) -> None:
        """Phoneme inputs use the GAR's flat ids of specials and phonemes (no acoustic ids)."""
        limit = self.config.token_space.acoustic_offset
        if ids.numel() and ids.device.type != "meta" and (ids.min() < 0 or ids.max() >= limit):  # meta: shapes only (FLOP counts)
            raise ValueError(f"{name} must be flat phoneme/special ids in [0, {limit}).")

    @can_return_tuple
    def forward(
        self,
        phoneme_ids: torch.LongTensor,  # [B, Lp] flat GAR ids of phonemes (PAD = 0 where padded)
        codes: torch.LongTensor,  # [B, K', T] 0-based codes of codebooks 0..K'-1 (K' > max codebook_index - 1)
        codebook_index: int | torch.LongTensor,  # int or [B], 1 <= j < K: the codebook to predict
        phoneme_attention_mask: torch.Tensor | None = None,  # [B, Lp]
        codes_attention_mask: torch.Tensor | None = None,  # [B, T]
        prompt_frames: torch.LongTensor | None = None,  # [B] leading frames embedded with all codebooks
        labels: torch.LongTensor | None = None,  # [B, T] target codes of codebook j, -100 = ignored
        frame_phoneme_ids: torch.LongTensor | None = None,  # [B, T] flat id of each frame's aligned phoneme
        **kwargs,
    ) -> EllaVNAROutput:
        """Predict codebook ``codebook_index`` for every frame.

        ``frame_phoneme_ids`` (flat phoneme ids like ``phoneme_ids``, PAD on padded frames) is
        required with ``config.frame_phonemes`` and refused without it.

        Returns:
            :class:`EllaVNAROutput` with ``logits`` ``[B, T, codebook_size]``. When ``labels`` is
            given the loss ignores padded and prompt frames as well as -100 entries.
        """
        batch, _, frames = codes.shape
        device = codes.device
        num_codebooks = self.config.num_codebooks
        if isinstance(codebook_index, int) or (torch.is_tensor(codebook_index) and codebook_index.dim() == 0):
            codebook_index = torch.full((batch,), int(codebook_index), dtype=torch.long, device=device)
        codebook_index = codebook_index.to(device=device, dtype=torch.long)
        values = device.type != "meta"  # meta tensors (FLOP counting) have shapes, no values to check
        if values and (codebook_index.min() < 1 or codebook_index.max() >= num_codebooks):
            raise ValueError(f"codebook_index must be in [1, {num_codebooks - 1}] (0 is the GAR's codebook).")
        if values and codes.shape[1] < int(codebook_index.max()):
            raise ValueError(
                f"Predicting codebook {int(codebook_index.max())} needs codes of codebooks 0..{int(codebook_index.max()) - 1}, "
                f"got {codes.shape[1]} codebooks."
            )
        self._check_flat_phoneme_ids("phoneme_ids", phoneme_ids)
        if phoneme_attention_mask is None:
            phoneme_attention_mask = torch.ones_like(phoneme_ids)
        if codes_attention_mask is None:
            codes_attention_mask = torch.ones(batch, frames, dtype=torch.long, device=device)
        if prompt_frames is None:
            prompt_frames = torch.zeros(batch, dtype=torch.long, device=device)

        frame_embeds = self._embed_frames(codes, codebook_index, prompt_frames)  # [B, T, H]
        if self.config.frame_phonemes:
            if frame_phoneme_ids is None or frame_phoneme_ids.shape != (batch, frames):
                raise ValueError(
                    f"This NAR has frame_phonemes=True and needs frame_phoneme_ids of shape {(batch, frames)} "
                    f"(each frame's aligned phoneme), got {None if frame_phoneme_ids is None else tuple(frame_phoneme_ids.shape)}."
                )
            self._check_flat_phoneme_ids("frame_phoneme_ids", frame_phoneme_ids)
            frame_embeds = frame_embeds + self.frame_phoneme_embeddings(frame_phoneme_ids.to(device))
        elif frame_phoneme_ids is not None:
            raise ValueError("frame_phoneme_ids was given but this NAR was configured with frame_phonemes=False.")
        embeds = torch.cat([self.phoneme_embeddings(phoneme_ids), frame_embeds], dim=1)  # [B, Lp + T, H]
        embeds = embeds + self.codebook_index_embeddings(codebook_index)[:, None]
        mask_2d = torch.cat([phoneme_attention_mask, codes_attention_mask], dim=1).long()  # [B, Lp + T]
        position_ids = positions_from_mask(mask_2d, mask_2d.shape[1], 0, device)
        mask = create_bidirectional_mask(config=self.config, inputs_embeds=embeds, attention_mask=mask_2d) if values else None
        hidden_states = self.run_layers(embeds, mask, position_ids, **kwargs)

        frame_states = hidden_states[:, phoneme_ids.shape[1] :]  # [B, T, H]
        head_weights = torch.stack([head.weight for head in self.heads])  # [K-1, C, H]
        logits = torch.einsum("bth,bch->btc", frame_states, head_weights[codebook_index - 1])  # [B, T, C]

        loss = None
        if labels is not None:
            time = torch.arange(frames, device=device)[None]
            ignore = (codes_attention_mask == 0) | (time < prompt_frames[:, None])
            targets = labels.to(device).masked_fill(ignore, IGNORE_INDEX)
            loss = F.cross_entropy(
                logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX
            )
        return EllaVNAROutput(loss=loss, logits=logits, last_hidden_state=hidden_states)

    @torch.no_grad()
    def decode_codebooks(
        self,
        phoneme_ids: torch.LongTensor,  # [B, Lp]
        first_codes: torch.LongTensor,  # [B, T] codebook-0 codes from the GAR
        phoneme_attention_mask: torch.Tensor | None = None,
        codes_attention_mask: torch.Tensor | None = None,
        prompt_codes: torch.LongTensor | None = None,  # [B, K, Tp] all codebooks of an acoustic prompt
        frame_phoneme_ids: torch.LongTensor | None = None,  # [B, Tp + T] aligned phoneme per frame (prompt first)
        return_probabilities: bool = False,
    ) -> torch.LongTensor | tuple[torch.LongTensor, torch.Tensor]:
        """Greedy NAR decoding of codebooks 1..K-1 given codebook 0.

        ``frame_phoneme_ids`` covers the prompt frames and then the new ones; it is needed exactly
        when ``config.frame_phonemes``. Each codebook is predicted from the argmax codes of the
        ones before it.

        Returns:
            ``[B, K, T]`` codes (the prompt frames, if any, are not included); with
            ``return_probabilities``, also ``[B, K - 1, T, codebook_size]`` float32: the softmax the
            code of each codebook 1..K-1 was picked from (a codec can decode their expected vectors).
        """
        batch, frames = first_codes.shape
        num_codebooks = self.config.num_codebooks
        prompt_length = 0 if prompt_codes is None else prompt_codes.shape[-1]
        codes = torch.zeros(batch, num_codebooks, prompt_length + frames, dtype=torch.long, device=first_codes.device)
        if prompt_codes is not None:
            codes[:, :, :prompt_length] = prompt_codes
        codes[:, 0, prompt_length:] = first_codes
        mask = codes_attention_mask
        if mask is None:
            mask = torch.ones(batch, frames, dtype=torch.long, device=first_codes.device)
        mask = torch.cat([torch.ones(batch, prompt_length, dtype=mask.dtype, device=mask.device), mask], dim=1)
        prompt = torch.full((batch,), prompt_length, dtype=torch.long, device=first_codes.device)
        probabilities = []
        for j in range(1, num_codebooks):
            logits = self(
                phoneme_ids=phoneme_ids,
                codes=codes,  # codebooks >= j are only read on prompt frames, where they are known
                codebook_index=j,
                phoneme_attention_mask=phoneme_attention_mask,
                codes_attention_mask=mask,
                prompt_frames=prompt,
                frame_phoneme_ids=frame_phoneme_ids,
            ).logits
            codes[:, j, prompt_length:] = logits[:, prompt_length:].argmax(-1)
            if return_probabilities:
                probabilities.append(logits[:, prompt_length:].float().softmax(-1))  # [B, T, C]
        if return_probabilities:
            empty = codes.new_zeros((batch, 0, frames, self.config.codebook_size), dtype=torch.float32)
            return codes[:, :, prompt_length:], torch.stack(probabilities, dim=1) if probabilities else empty
        return codes[:, :, prompt_length:]


EllaVConfig.register_for_auto_class()
EllaVNARConfig.register_for_auto_class()
EllaVModel.register_for_auto_class("AutoModel")
EllaVForCausalLM.register_for_auto_class("AutoModelForCausalLM")
EllaVNARModel.register_for_auto_class("AutoModel")

__all__ = [
    "EllaVForCausalLM",
    "EllaVModel",
    "EllaVNARModel",
    "EllaVNAROutput",
    "EllaVPreTrainedModel",
]
