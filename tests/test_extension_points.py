"""Each extension point is one module (here: the test) plus one registry line: a decoding option
(``modeling/decoding_options.py``) and a codec (``modeling/registry.py``)."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig, AutoModel, PreTrainedConfig, PreTrainedModel

from ella_v_hf.modeling import decoding_options, registry


def test_one_table_row_makes_a_decoding_option_everywhere(monkeypatch):
    from ella_v_hf._decoding import decoding_arguments
    from ella_v_hf.cli import build_parser
    from ella_v_hf.modeling import EllaVGenerationConfig

    row = decoding_options.DecodingOption(  # the one line a new option needs (besides the code that uses it)
        "phone_rate", "a made-up option: target phonemes per second", decoding_options._number(float, "phone_rate"),
        decoding_options._in_range("phone_rate", lambda v: v > 0, "> 0"), own=True,
    )
    monkeypatch.setattr(decoding_options, "DECODING_OPTIONS", (*decoding_options.DECODING_OPTIONS, row))
    config = EllaVGenerationConfig(phone_rate=12.0)  # an ELLA-V field of the generation config
    config.check_supported()
    assert config.phone_rate == 12.0 and EllaVGenerationConfig().phone_rate is None
    with pytest.raises(ValueError, match="phone_rate must be > 0"):  # its own check
        EllaVGenerationConfig(phone_rate=-1.0).check_supported()
    args = build_parser().parse_args(["synthesize", "Hi.", "-o", "x.wav", "--phone-rate", "11.5"])  # a CLI flag
    assert decoding_arguments(args)["phone_rate"] == 11.5
    assert decoding_options.parse_strategy("greedy,phone_rate=10")["phone_rate"] == 10.0  # an evaluate --sweep key


class ToyCodecConfig(PreTrainedConfig):
    """A 1-codebook codec: each 20 ms frame's RMS level, quantised to 16 steps."""

    model_type = "toy_test_codec"

    def __init__(self, sampling_rate: int = 16000, frame_rate: float = 50.0, num_codebooks: int = 1,
                 codebook_size: int = 16, **kwargs) -> None:
        self.sampling_rate, self.frame_rate = sampling_rate, frame_rate
        self.num_codebooks, self.codebook_size = num_codebooks, codebook_size
        super().__init__(**kwargs)


class ToyCodecModel(PreTrainedModel):
    config_class = ToyCodecConfig

    def __init__(self, config: ToyCodecConfig) -> None:
        super().__init__(config)
        self.hop = int(config.sampling_rate / config.frame_rate)
        self.level = torch.nn.Parameter(torch.linspace(0, 0.5, config.codebook_size), requires_grad=False)
        self.post_init()

    def _init_weights(self, module) -> None:
        pass

    @classmethod
    def from_source(cls, source: str | None = None) -> ToyCodecModel:
        return cls(ToyCodecConfig()) if source is None else cls.from_pretrained(source)

    def encode(self, input_values: torch.Tensor, **kwargs) -> torch.LongTensor:  # [B, 1, S] -> [B, 1, T]
        frames = input_values[:, 0, : input_values.shape[-1] // self.hop * self.hop].unflatten(-1, (-1, self.hop))
        rms = frames.pow(2).mean(-1).sqrt()  # [B, T]
        return (rms[..., None] - self.level).abs().argmin(-1)[:, None]

    def decode(self, audio_codes: torch.LongTensor, **kwargs) -> torch.Tensor:  # [B, 1, T] -> [B, 1, T * hop]
        return self.level[audio_codes[:, 0]].repeat_interleave(self.hop, dim=-1)[:, None]


def test_one_registry_line_makes_a_codec_usable_by_prepare_and_the_auto_classes(tmp_path):
    from ella_v_hf.processing.prepare import _check_arguments, codec_names, load_codec

    registry.register_codec("toy", ToyCodecConfig, ToyCodecModel)  # the one line
    try:
        assert "toy" in codec_names()
        _check_arguments({"codec": "toy", "aligner": "builtin", "data": str(tmp_path)})  # `ella-v prepare --codec toy` accepts it
        codec = load_codec("toy")
        codes = codec.encode(torch.randn(1, 1, 16000) * 0.1)
        assert codes.shape == (1, 1, 50) and codec.decode(codes).shape == (1, 1, 16000)
        codec.save_pretrained(tmp_path / "toy")
        assert isinstance(load_codec("toy", str(tmp_path / "toy")), ToyCodecModel)
        assert isinstance(AutoModel.from_config(AutoConfig.for_model("toy_test_codec")), ToyCodecModel)  # the composite builds it so
    finally:
        registry.CODECS.pop("toy")
