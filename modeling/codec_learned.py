"""The learned embedded codec: a small convolutional autoencoder over log-mel frames with a residual
vector quantiser, decoded to audio by Griffin-Lim or by a learned vocoder (:mod:`.vocoder`).

It is the offline default (no download; trainable on a CPU with ``ella-v train-codec``). Two
choices make its *first* codebook carry the phonetic content, which the GAR needs:

- **temporal context**: the encoder sees about 0.4 s around each frame (dilated convolutions), so a
  code can describe a phone rather than one spectral slice;
- **quantiser dropout** (SoundStream, EnCodec): each training example keeps only its first ``n``
  quantiser levels, ``n`` uniform in ``1..K``, so the decoder learns to speak from the first level
  alone and every further level refines it.

Interface (shared by every codec of this package, shaped like transformers' ``EncodecModel``):
``encode(input_values [B, 1, S]) -> audio_codes [B, K, T]`` and ``decode(audio_codes [B, K', T])
-> audio_values [B, 1, T * samples_per_frame]`` for any ``K' <= K``; ``sampling_rate``,
``frame_rate``, ``num_codebooks`` and ``codebook_size`` on the config.
This file needs only torch and transformers, so it travels as remote code with a checkpoint.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedConfig, PreTrainedModel

from .code_vectors import summed_code_vectors
from .loading import StrictLoadingMixin
from .mel import LogMel, check_mel_fields
from .vocoder import IstftVocoder

#: The learned codec's waveform stages (``EllaVCodecConfig.waveform_decoder``).
WAVEFORM_DECODERS = ("griffin-lim", "vocos")
#: ``EllaVCodecConfig`` fields of the waveform stage only (log-mel -> waveform): changing them
#: leaves every code, and every GAR and NAR trained on the codes, valid.
WAVEFORM_STAGE_FIELDS = ("griffin_lim_iters", "griffin_lim_momentum", "griffin_lim_sharpening", "waveform_decoder",
                         "vocoder_hidden_size", "vocoder_intermediate_size", "vocoder_layers", "vocoder_n_fft")


class EllaVCodecConfig(PreTrainedConfig):
    """Configuration of :class:`EllaVCodecModel`.

    Args:
        sampling_rate: Audio sampling rate in Hz.
        n_fft / hop_length / n_mels / f_min / f_max: Log-mel analysis (``hop_length`` samples per mel frame).
        downsample: Mel frames per codec frame (1: 50 Hz codes at hop 320 and 16 kHz; 2: 25 Hz).
        hidden_size: Channels of the encoder and decoder convolutions.
        dilations: Dilation of each residual unit (encoder; mirrored in the decoder).
        kernel_size: Kernel of the dilated convolutions.
        codebook_dim: Dimension of the quantised latent.
        num_codebooks: Residual quantiser depth K.
        codebook_size: Codes per codebook.
        first_codebook_size: Codes the first codebook uses (at most ``codebook_size``; ``None``: all).
            A smaller first level, with the phoneme loss of ``ella-v train-codec``, is easier for a
            GAR to predict; its unused entries stay zero and are never chosen.
        commitment_weight: Weight of the commitment loss (training).
        ema_decay: Decay of the codebooks' exponential moving averages (training).
        dead_code_threshold: A code whose moving-average usage falls below this many frames per
            batch is restarted from a random latent of the batch (training).
        griffin_lim_iters / griffin_lim_momentum: Phase reconstruction in ``decode`` (Griffin-Lim).
        griffin_lim_sharpening: Exponent that sharpens the inverted spectrum within each mel band
            before Griffin-Lim, keeping the bands' energies (:func:`~.mel.sharpen_within_bands`);
            1.0 is plain Griffin-Lim.
        waveform_decoder: ``decode``'s waveform stage: ``"griffin-lim"`` (the mel inversion) or
            ``"vocos"`` (a learned :class:`~.vocoder.IstftVocoder`, trained by ``ella-v train-vocoder``).
        vocoder_hidden_size / vocoder_intermediate_size / vocoder_layers / vocoder_n_fft: The
            vocoder's ConvNeXt width, MLP width, depth and output STFT size (``"vocos"`` only).
    """

    model_type = "ella_v_codec"

    sampling_rate: int = 16000
    n_fft: int = 1024
    hop_length: int = 320
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float | None = None
    downsample: int = 1
    hidden_size: int = 128
    dilations: list[int] | tuple[int, ...] = (1, 2, 4, 1)
    kernel_size: int = 3
    codebook_dim: int = 64
    num_codebooks: int = 8
    codebook_size: int = 256
    first_codebook_size: int | None = None
    commitment_weight: float = 0.25
    ema_decay: float = 0.99
    dead_code_threshold: float = 0.5
    griffin_lim_iters: int = 32
    griffin_lim_momentum: float = 0.99
    griffin_lim_sharpening: float = 1.0
    waveform_decoder: str = "griffin-lim"
    vocoder_hidden_size: int = 128
    vocoder_intermediate_size: int = 384
    vocoder_layers: int = 8
    vocoder_n_fft: int = 1280

    def __post_init__(self, **kwargs) -> None:
        check_mel_fields(self)
        if self.waveform_decoder not in WAVEFORM_DECODERS:
            raise ValueError(f"waveform_decoder must be one of {WAVEFORM_DECODERS}, got {self.waveform_decoder!r}")
        self.dilations = list(self.dilations)
        if self.downsample < 1 or self.kernel_size % 2 == 0 or not self.dilations:
            raise ValueError("downsample must be >= 1, kernel_size odd and dilations non-empty")
        if self.first_codebook_size is not None and not 2 <= self.first_codebook_size <= self.codebook_size:
            raise ValueError(f"first_codebook_size must lie in [2, codebook_size={self.codebook_size}], got {self.first_codebook_size}")
        super().__post_init__(**kwargs)

    @property
    def samples_per_frame(self) -> int:
        """Audio samples per codec frame."""
        return self.hop_length * self.downsample

    @property
    def frame_rate(self) -> float:
        """Codec frames per second."""
        return self.sampling_rate / self.samples_per_frame


class _ResidualUnit(nn.Module):
    """Pre-activation dilated convolution with a 1x1 projection and a skip: ``[B, C, T] -> [B, C, T]``."""

    def __init__(self, channels: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel_size, dilation=dilation, padding=dilation * (kernel_size - 1) // 2)
        self.proj = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.proj(F.gelu(self.conv(F.gelu(x))))


class ResidualVectorQuantizer(nn.Module):
    """K residual codebooks of ``codebook_size`` x ``codebook_dim`` with EMA updates.

    Buffers (saved with the model): ``codebooks [K, C, D]``; the training statistics
    ``cluster_size [K, C]``, ``embed_sum [K, C, D]`` and ``initialized [K]`` (k-means on the first batch).
    The first codebook may use only its first ``first_codebook_size`` entries.
    """

    def __init__(
        self, num_codebooks: int, codebook_size: int, dim: int, decay: float, dead_code_threshold: float,
        first_codebook_size: int | None = None,
    ) -> None:
        super().__init__()
        self.decay, self.threshold = decay, dead_code_threshold
        self.sizes = [first_codebook_size or codebook_size] + [codebook_size] * (num_codebooks - 1)  # codes used per level
        self.register_buffer("codebooks", torch.zeros(num_codebooks, codebook_size, dim))
        self.register_buffer("cluster_size", torch.zeros(num_codebooks, codebook_size))
        self.register_buffer("embed_sum", torch.zeros(num_codebooks, codebook_size, dim))
        self.register_buffer("initialized", torch.zeros(num_codebooks))

    @staticmethod
    def _nearest(x: torch.Tensor, codebook: torch.Tensor) -> torch.LongTensor:
        """``x [N, D]``, ``codebook [C, D]`` -> nearest code ``[N]``."""
        distances = x.pow(2).sum(-1, keepdim=True) - 2 * x @ codebook.T + codebook.pow(2).sum(-1)
        return distances.argmin(-1)

    def quantize(self, latents: torch.Tensor, levels: int | None = None) -> torch.LongTensor:
        """Latents ``[B, T, D]`` -> codes ``[B, K', T]`` (the first ``levels`` codebooks; all by default)."""
        residual = latents.float()
        codes = []
        for codebook, size in zip(self.codebooks[: levels or len(self.codebooks)], self.sizes):
            index = self._nearest(residual.reshape(-1, residual.shape[-1]), codebook[:size]).view(residual.shape[:-1])
            residual = residual - codebook[index]
            codes.append(index)
        return torch.stack(codes, dim=1)

    def dequantize(
        self, codes: torch.LongTensor, probabilities: torch.Tensor | None = None, first_probabilities: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Codes ``[B, K', T]`` (the first K' codebooks) -> summed latents ``[B, T, D]``.

        ``probabilities`` ``[B, K' - 1, T, codebook_size]``: distributions over the codes of levels
        2..K' (the NAR's), which then add their expected vector; ``first_probabilities``
        ``[B, T, C_1]``: the same for the first level (the GAR's); see :mod:`.code_vectors`.
        """
        codebooks = [self.codebooks[level, :size] for level, size in enumerate(self.sizes)]
        return summed_code_vectors(codebooks, codes, probabilities, first_probabilities)

    @torch.no_grad()
    def _kmeans(self, data: torch.Tensor, size: int, iterations: int = 10) -> torch.Tensor:
        centroids = data[torch.randperm(len(data), device=data.device)[:size]].clone()
        if len(centroids) < size:  # fewer vectors than codes: repeat with a little noise
            centroids = centroids[torch.arange(size, device=data.device) % len(centroids)]
            centroids = centroids + 1e-3 * torch.randn_like(centroids)
        for _ in range(iterations):
            index = self._nearest(data, centroids)
            counts = torch.bincount(index, minlength=size).float()
            sums = torch.zeros_like(centroids).index_add_(0, index, data)
            filled = counts > 0
            centroids[filled] = sums[filled] / counts[filled, None]
        return centroids

    @torch.no_grad()
    def _ema_update(self, level: int, residual: torch.Tensor, index: torch.LongTensor) -> None:
        """One EMA step of codebook ``level`` from its active residuals ``[N, D]`` and codes ``[N]``."""
        size = self.sizes[level]
        codebook, cluster_size, embed_sum = self.codebooks[level, :size], self.cluster_size[level, :size], self.embed_sum[level, :size]
        if not self.initialized[level]:
            codebook.copy_(self._kmeans(residual, size))
            cluster_size.fill_(len(residual) / size)
            embed_sum.copy_(codebook * cluster_size[:, None])
            self.initialized[level] = 1.0
            return
        counts = torch.bincount(index, minlength=size).float()
        sums = torch.zeros_like(embed_sum).index_add_(0, index, residual)
        cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        total = cluster_size.sum()
        smoothed = (cluster_size + 1e-5) / (total + size * 1e-5) * total  # Laplace smoothing
        codebook.copy_(embed_sum / smoothed[:, None])
        dead = cluster_size < self.threshold
        if dead.any():  # restart unused codes from random latents of this batch
            picks = residual[torch.randint(len(residual), (int(dead.sum()),), device=residual.device)]
            codebook[dead] = picks
            cluster_size[dead] = self.threshold
            embed_sum[dead] = picks * self.threshold

    def forward(
        self, latents: torch.Tensor, levels: torch.LongTensor, return_first: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor] | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training pass with quantiser dropout.

        Args:
            latents: ``[B, T, D]`` encoder outputs.
            levels: ``[B]`` quantiser levels each example keeps (1..K).
            return_first: Also return the first level's quantised latents ``[B, T, D]`` with
                straight-through gradients (every example keeps level 1), for a loss on what the
                first codebook alone carries.

        Returns:
            ``(quantized [B, T, D]`` with straight-through gradients, ``commitment loss)``, and the
            first level's ``[B, T, D]`` with ``return_first``.
        """
        residual = latents
        quantized = torch.zeros_like(latents)
        commitment = latents.new_zeros(())
        first = None
        for level in range(len(self.codebooks)):
            active = levels > level  # [B]
            if not active.any():
                break
            flat = residual[active].reshape(-1, residual.shape[-1])  # [N, D]
            codebook = self.codebooks[level, : self.sizes[level]]  # [C_level, D]
            if self.training:
                index = self._nearest(flat.detach(), codebook) if self.initialized[level] else None
                self._ema_update(level, flat.detach().float(), index)
            index = self._nearest(flat.detach(), codebook)
            chosen = codebook[index].view(-1, *residual.shape[1:])  # [B_active, T, D]
            commitment = commitment + F.mse_loss(residual[active], chosen)
            step = torch.zeros_like(latents)
            step[active] = chosen
            quantized = quantized + step
            residual = residual - step
            if level == 0:
                first = latents + (step - latents).detach()
        quantized = latents + (quantized - latents).detach()
        return (quantized, commitment, first) if return_first else (quantized, commitment)


class EllaVCodecModel(StrictLoadingMixin, PreTrainedModel):
    """The learned embedded codec (see the module docstring). Train it with ``ella-v train-codec``.

    ``forward(input_features)`` is the training pass: normalised log-mel in, reconstruction and
    losses out; ``encode``/``decode`` are the codec interface.
    """

    config_class = EllaVCodecConfig
    main_input_name = "input_values"
    # The EMA statistics only train the codebooks (from a run's checkpoint, which keeps them):
    # ``save_pretrained`` leaves them out (half the quantiser's size) and a load does not need them.
    _keys_to_ignore_on_save = ["quantizer.cluster_size", "quantizer.embed_sum"]
    _keys_to_ignore_on_load_missing = [r"quantizer\.cluster_size$", r"quantizer\.embed_sum$"]

    @classmethod
    def from_source(cls, source: str | None = None) -> EllaVCodecModel:
        """The codec saved at ``source``; ``None``: the one bundled with the ella-v-hf package."""
        if source is None:
            spec = importlib.util.find_spec("ella_v_hf")
            if spec is None or not spec.submodule_search_locations:
                raise ValueError("the bundled learned codec comes with the ella-v-hf package; give a codec directory")
            source = str(Path(next(iter(spec.submodule_search_locations))) / "pretrained" / "codec")
        if not (Path(source) / "config.json").is_file():
            raise ValueError(f"No learned codec at {source}: train one with `ella-v train-codec` and pass --codec-model DIR.")
        return cls.from_pretrained(source)

    def __init__(self, config: EllaVCodecConfig) -> None:
        super().__init__(config)
        hidden, kernel = config.hidden_size, config.kernel_size
        self.frontend = LogMel(config.sampling_rate, config.n_fft, config.hop_length, config.n_mels, config.f_min, config.f_max)
        self.register_buffer("feature_mean", torch.zeros(config.n_mels))
        self.register_buffer("feature_std", torch.ones(config.n_mels))
        down = config.downsample
        self.encoder = nn.Sequential(
            nn.Conv1d(config.n_mels, hidden, kernel, padding=kernel // 2),
            *[_ResidualUnit(hidden, kernel, d) for d in config.dilations],
            *([nn.GELU(), nn.Conv1d(hidden, hidden, 2 * down, stride=down, padding=down // 2)] if down > 1 else []),
            nn.GELU(),
            nn.Conv1d(hidden, config.codebook_dim, 1),
        )
        self.quantizer = ResidualVectorQuantizer(
            config.num_codebooks, config.codebook_size, config.codebook_dim, config.ema_decay, config.dead_code_threshold,
            config.first_codebook_size,
        )
        self.decoder = nn.Sequential(
            nn.Conv1d(config.codebook_dim, hidden, kernel, padding=kernel // 2),
            *([nn.GELU(), nn.ConvTranspose1d(hidden, hidden, 2 * down, stride=down, padding=down // 2)] if down > 1 else []),
            *[_ResidualUnit(hidden, kernel, d) for d in reversed(config.dilations)],
            nn.GELU(),
            nn.Conv1d(hidden, config.n_mels, kernel, padding=kernel // 2),
        )
        self.vocoder = (
            IstftVocoder(config.n_mels, config.vocoder_hidden_size, config.vocoder_intermediate_size, config.vocoder_layers,
                         config.vocoder_n_fft, config.hop_length)
            if config.waveform_decoder == "vocos" else None
        )
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, ResidualVectorQuantizer):  # EMA statistics: zero, as a fresh quantiser's
            module.cluster_size.zero_()
            module.embed_sum.zero_()
        if isinstance(module, nn.Conv1d | nn.ConvTranspose1d):
            nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    # -- features -----------------------------------------------------------------------------
    def features(self, input_values: torch.Tensor) -> torch.Tensor:
        """Waveform ``[B, 1, S]`` or ``[B, S]`` -> normalised log-mel ``[B, T_mel, n_mels]``, with
        ``T_mel = ceil(S / hop_length)`` rounded up to a multiple of ``downsample`` (edge-padded)."""
        if input_values.dim() == 3:
            input_values = input_values[:, 0]
        features = (self.frontend(input_values) - self.feature_mean) / self.feature_std
        extra = -features.shape[1] % self.config.downsample
        return F.pad(features.transpose(1, 2), (0, extra), mode="replicate").transpose(1, 2) if extra else features

    def latents(self, features: torch.Tensor) -> torch.Tensor:
        """Normalised log-mel ``[B, T_mel, n_mels]`` -> latents ``[B, T, codebook_dim]``."""
        return self.encoder(features.transpose(1, 2)).transpose(1, 2)

    def reconstruct(self, latents: torch.Tensor) -> torch.Tensor:
        """(Quantised) latents ``[B, T, codebook_dim]`` -> normalised log-mel ``[B, T * downsample, n_mels]``."""
        return self.decoder(latents.transpose(1, 2)).transpose(1, 2)

    def forward(
        self,
        input_features: torch.Tensor,
        levels: torch.LongTensor | None = None,
        decoder_latents: torch.Tensor | None = None,
        **kwargs,
    ) -> dict[str, torch.Tensor]:
        """Training pass.

        Args:
            input_features: ``[B, T_mel, n_mels]`` normalised log-mel (``T_mel`` a multiple of ``downsample``).
            levels: ``[B]`` quantiser levels kept per example (quantiser dropout); all by default.
            decoder_latents: Optional ``[B, T_mel / downsample, codebook_dim]``: latents the decoder
                reconstructs ``input_features`` from instead of their own quantised encoding (decoder
                training on latents made elsewhere, e.g. the NAR's); ``levels`` is then unused and
                the commitment loss is zero.

        Returns:
            ``{"loss", "reconstruction_loss", "commitment_loss", "reconstruction" [B, T_mel, n_mels],
            "first_level" [B, T, codebook_dim]}``; the reconstruction loss is L1 + L2 on the
            normalised log-mel; ``first_level`` is the first codebook's quantised latents
            (straight-through), on which ``ella-v train-codec`` can put a phoneme loss (absent with
            ``decoder_latents``).
        """
        if decoder_latents is not None:
            expected = (input_features.shape[0], input_features.shape[1] // self.config.downsample, self.config.codebook_dim)
            if tuple(decoder_latents.shape) != expected:
                raise ValueError(f"decoder_latents must be {list(expected)} for input_features {list(input_features.shape)}, "
                                 f"got {list(decoder_latents.shape)}")
            reconstruction = self.reconstruct(decoder_latents)
            recon_loss = F.l1_loss(reconstruction, input_features) + F.mse_loss(reconstruction, input_features)
            return {"loss": recon_loss, "reconstruction_loss": recon_loss, "commitment_loss": recon_loss.new_zeros(()),
                    "reconstruction": reconstruction}
        if levels is None:
            levels = torch.full((input_features.shape[0],), self.config.num_codebooks, device=input_features.device)
        quantized, commitment, first = self.quantizer(self.latents(input_features), levels, return_first=True)
        reconstruction = self.reconstruct(quantized)
        recon_loss = F.l1_loss(reconstruction, input_features) + F.mse_loss(reconstruction, input_features)
        loss = recon_loss + self.config.commitment_weight * commitment
        return {"loss": loss, "reconstruction_loss": recon_loss, "commitment_loss": commitment, "reconstruction": reconstruction,
                "first_level": first}

    # -- codec interface ----------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, input_values: torch.Tensor, **kwargs) -> torch.LongTensor:
        """Waveform ``[B, 1, S]`` at ``config.sampling_rate`` -> codes ``[B, K, ceil(S / samples_per_frame)]``."""
        return self.quantizer.quantize(self.latents(self.features(input_values)))

    @torch.no_grad()
    def decode_features(
        self,
        audio_codes: torch.LongTensor,
        code_probabilities: torch.Tensor | None = None,
        first_code_probabilities: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Codes ``[B, K', T]`` (the first K' codebooks) -> log-mel ``[B, T * downsample, n_mels]``.

        ``code_probabilities`` ``[B, K' - 1, T, codebook_size]``: decode levels 2..K' from their
        expected vectors under these distributions; ``first_code_probabilities`` ``[B, T, C_1]``:
        the first level likewise (see :mod:`.code_vectors`).
        """
        return self.decode_latents(self.quantizer.dequantize(audio_codes.long(), code_probabilities, first_code_probabilities))

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """(Quantised or unquantised) latents ``[B, T, codebook_dim]`` -> log-mel ``[B, T * downsample, n_mels]``."""
        return self.reconstruct(latents) * self.feature_std + self.feature_mean

    @torch.no_grad()
    def to_waveform(self, log_mel: torch.Tensor, waveform_decoder: str | None = None) -> torch.Tensor:
        """Log-mel ``[B, T, n_mels]`` (unnormalised, as :meth:`decode_features` gives) -> waveform
        ``[B, T * hop_length]`` through ``waveform_decoder`` (default: the config's).

        Raises:
            ValueError: ``"vocos"`` asked of a codec without a trained vocoder, or an unknown stage.
        """
        stage = waveform_decoder or self.config.waveform_decoder
        if stage not in WAVEFORM_DECODERS:
            raise ValueError(f"waveform_decoder must be one of {WAVEFORM_DECODERS}, got {stage!r}")
        if stage == "vocos":
            if self.vocoder is None:
                raise ValueError("This codec has no vocoder: train one with `ella-v train-vocoder`, or use waveform_decoder='griffin-lim'")
            return self.vocoder(((log_mel - self.feature_mean) / self.feature_std).to(self.vocoder.embed.weight.dtype)).float()
        return self.frontend.to_waveform(
            log_mel, self.config.griffin_lim_iters, self.config.griffin_lim_momentum, self.config.griffin_lim_sharpening
        )

    @torch.no_grad()
    def decode(
        self,
        audio_codes: torch.LongTensor,
        code_probabilities: torch.Tensor | None = None,
        first_code_probabilities: torch.Tensor | None = None,
        waveform_decoder: str | None = None,
        **kwargs,
    ) -> torch.Tensor:
        """Codes ``[B, K', T]`` -> waveform ``[B, 1, T * samples_per_frame]`` (log-mel, then the
        waveform stage: ``waveform_decoder``, default the config's — Griffin-Lim or the vocoder).

        ``code_probabilities``, ``first_code_probabilities``: as in :meth:`decode_features`.
        """
        log_mel = self.decode_features(audio_codes, code_probabilities, first_code_probabilities)
        return self.to_waveform(log_mel, waveform_decoder)[:, None]


__all__ = ["WAVEFORM_DECODERS", "EllaVCodecConfig", "EllaVCodecModel", "ResidualVectorQuantizer"]
