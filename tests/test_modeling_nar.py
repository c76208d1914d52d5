"""The NAR model (EllaVNARModel): codebook conditioning, masks, prompts, batching, gradients, decoding."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_nar_config
from transformers import AutoModel

from ella_v_hf import EllaVNARModel


def nar(**overrides) -> EllaVNARModel:
    return EllaVNARModel(tiny_nar_config(**overrides)).eval()


def inputs(batch: int = 2, frames: int = 7, phonemes: int = 3, codebooks: int = 4):
    phoneme_ids = torch.randint(4, 14, (batch, phonemes))
    codes = torch.randint(0, 16, (batch, codebooks, frames))
    return phoneme_ids, codes


def test_shapes_and_loss():
    model = nar()
    phoneme_ids, codes = inputs()
    out = model(phoneme_ids=phoneme_ids, codes=codes, codebook_index=2, labels=codes[:, 2])
    assert out.logits.shape == (2, 7, 16)
    assert out.last_hidden_state.shape == (2, 3 + 7, 32)
    assert torch.isfinite(out.loss)


def test_input_uses_only_lower_codebooks():
    model = nar()
    phoneme_ids, codes = inputs()
    expected = model(phoneme_ids=phoneme_ids, codes=codes, codebook_index=2).logits
    changed = codes.clone()
    changed[:, 2:] = (changed[:, 2:] + 1) % 16  # the target codebook and above must not leak in
    torch.testing.assert_close(model(phoneme_ids=phoneme_ids, codes=changed, codebook_index=2).logits, expected)
    changed = codes.clone()
    changed[:, 1, 3] = (changed[:, 1, 3] + 1) % 16
    assert not torch.allclose(model(phoneme_ids=phoneme_ids, codes=changed, codebook_index=2).logits, expected)


def test_attention_is_bidirectional():
    model = nar()
    phoneme_ids, codes = inputs()
    expected = model(phoneme_ids=phoneme_ids, codes=codes, codebook_index=1).logits
    changed = codes.clone()
    changed[:, 0, -1] = (changed[:, 0, -1] + 1) % 16
    assert not torch.allclose(model(phoneme_ids=phoneme_ids, codes=changed, codebook_index=1).logits[:, 0], expected[:, 0])


def test_prompt_frames_use_all_codebooks_and_carry_no_loss():
    model = nar()
    phoneme_ids, codes = inputs()
    prompt = torch.tensor([3, 3])
    base = model(phoneme_ids=phoneme_ids, codes=codes, codebook_index=1, prompt_frames=prompt, labels=codes[:, 1])
    changed = codes.clone()
    changed[:, 3, 0] = (changed[:, 3, 0] + 1) % 16  # codebook 3 of a prompt frame is an input ...
    assert not torch.allclose(model(phoneme_ids=phoneme_ids, codes=changed, codebook_index=1, prompt_frames=prompt).logits, base.logits)
    labels = codes[:, 1].clone()
    labels[:, :3] = (labels[:, :3] + 5) % 16  # ... but prompt frames are never targets
    torch.testing.assert_close(
        model(phoneme_ids=phoneme_ids, codes=codes, codebook_index=1, prompt_frames=prompt, labels=labels).loss, base.loss
    )


def test_padding_and_per_row_codebook_match_single_rows():
    model = nar()
    rows = [(torch.randint(4, 14, (2,)), torch.randint(0, 16, (4, 5))), (torch.randint(4, 14, (4,)), torch.randint(0, 16, (4, 8)))]
    indices = [1, 3]
    phoneme_ids = torch.zeros(2, 4, dtype=torch.long)
    phoneme_mask = torch.zeros(2, 4, dtype=torch.long)
    codes = torch.zeros(2, 4, 8, dtype=torch.long)
    codes_mask = torch.zeros(2, 8, dtype=torch.long)
    labels = torch.full((2, 8), -100)
    for i, (ph, cd) in enumerate(rows):
        phoneme_ids[i, : len(ph)], phoneme_mask[i, : len(ph)] = ph, 1
        codes[i, :, : cd.shape[1]], codes_mask[i, : cd.shape[1]] = cd, 1
        labels[i, : cd.shape[1]] = cd[indices[i]]
    batch = model(
        phoneme_ids=phoneme_ids,
        codes=codes,
        codebook_index=torch.tensor(indices),
        phoneme_attention_mask=phoneme_mask,
        codes_attention_mask=codes_mask,
        labels=labels,
    )
    total, count = 0.0, 0
    for i, (ph, cd) in enumerate(rows):
        single = model(phoneme_ids=ph[None], codes=cd[None], codebook_index=indices[i], labels=cd[indices[i]][None])
        torch.testing.assert_close(batch.logits[i, : cd.shape[1]], single.logits[0], rtol=1e-4, atol=1e-5)
        total, count = total + single.loss * cd.shape[1], count + cd.shape[1]
    torch.testing.assert_close(batch.loss, total / count, rtol=1e-4, atol=1e-5)


def test_gradients_reach_every_parameter():
    model = nar().train()
    phoneme_ids, codes = inputs(batch=3)
    index = torch.tensor([1, 2, 3])
    out = model(
        phoneme_ids=phoneme_ids,
        codes=codes,
        codebook_index=index,
        prompt_frames=torch.tensor([2, 0, 0]),
        labels=codes[torch.arange(3), index],
    )
    out.loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_decode_codebooks_greedy_matches_stepwise_forward():
    model = nar()
    phoneme_ids, codes = inputs(batch=1)
    decoded = model.decode_codebooks(phoneme_ids, codes[:, 0])
    assert decoded.shape == (1, 4, 7) and torch.equal(decoded[:, 0], codes[:, 0])
    for j in range(1, 4):
        logits = model(phoneme_ids=phoneme_ids, codes=decoded[:, :j], codebook_index=j).logits
        assert torch.equal(logits.argmax(-1), decoded[:, j])
    prompt = torch.randint(0, 16, (1, 4, 3))
    with_prompt = model.decode_codebooks(phoneme_ids, codes[:, 0], prompt_codes=prompt)
    assert with_prompt.shape == (1, 4, 7)
    # The distributions the codes were picked from (prompt frames left out, as for the codes).
    again, probabilities = model.decode_codebooks(phoneme_ids, codes[:, 0], prompt_codes=prompt, return_probabilities=True)
    assert torch.equal(again, with_prompt) and probabilities.shape == (1, 3, 7, 16) and probabilities.dtype == torch.float32
    torch.testing.assert_close(probabilities.sum(-1), torch.ones(1, 3, 7))
    assert torch.equal(probabilities.argmax(-1), with_prompt[:, 1:])


def test_save_load_round_trip(tmp_path):
    model = nar()
    phoneme_ids, codes = inputs()
    expected = model(phoneme_ids=phoneme_ids, codes=codes, codebook_index=3).logits
    model.save_pretrained(tmp_path)
    for loaded in (EllaVNARModel.from_pretrained(tmp_path), AutoModel.from_pretrained(tmp_path)):
        assert isinstance(loaded, EllaVNARModel)
        torch.testing.assert_close(loaded(phoneme_ids=phoneme_ids, codes=codes, codebook_index=3).logits, expected, rtol=0, atol=0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(codebook_index=0), r"codebook_index must be in \[1, 3\]"),
        (dict(codebook_index=4), r"codebook_index must be in \[1, 3\]"),
        (dict(codebook_index=3, codes=torch.zeros(1, 2, 5, dtype=torch.long)), "needs codes of codebooks 0..2"),
        (dict(codebook_index=1, phoneme_ids=torch.tensor([[14]])), "flat phoneme/special ids"),
    ],
)
def test_bad_inputs(kwargs, message):
    model = nar()
    args = dict(phoneme_ids=torch.tensor([[5, 6]]), codes=torch.zeros(1, 4, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=message):
        model(**{**args, **kwargs})


# -- frame_phonemes: the aligned phoneme of every frame as an extra input (an extension) ----------
def test_frame_phonemes_are_an_input_and_required():
    model = nar(frame_phonemes=True)
    phoneme_ids, codes = inputs()
    aligned = phoneme_ids[:, [0, 0, 1, 1, 1, 2, 2]]  # [B, T]
    with pytest.raises(ValueError, match="needs frame_phoneme_ids of shape"):
        model(phoneme_ids=phoneme_ids, codes=codes, codebook_index=1)
    with pytest.raises(ValueError, match="needs frame_phoneme_ids of shape"):
        model(phoneme_ids=phoneme_ids, codes=codes, codebook_index=1, frame_phoneme_ids=aligned[:, :5])
    base = model(phoneme_ids=phoneme_ids, codes=codes, codebook_index=1, frame_phoneme_ids=aligned).logits
    moved = aligned.clone()
    moved[:, 2] = phoneme_ids[:, 0]  # frame 2 now belongs to the first phoneme
    assert not torch.allclose(model(phoneme_ids=phoneme_ids, codes=codes, codebook_index=1, frame_phoneme_ids=moved).logits, base)
    decoded = model.decode_codebooks(phoneme_ids, codes[:, 0], frame_phoneme_ids=aligned)
    assert decoded.shape == codes.shape and torch.equal(decoded[:, 0], codes[:, 0])
    with pytest.raises(ValueError, match="frame_phonemes=False"):
        nar()(phoneme_ids=phoneme_ids, codes=codes, codebook_index=1, frame_phoneme_ids=aligned)


def test_frame_phonemes_round_trip(tmp_path):
    model = nar(frame_phonemes=True)
    model.save_pretrained(tmp_path)
    loaded = EllaVNARModel.from_pretrained(tmp_path).eval()
    assert loaded.config.frame_phonemes
    phoneme_ids, codes = inputs()
    aligned = phoneme_ids[:, [0, 0, 1, 1, 1, 2, 2]]
    torch.testing.assert_close(
        loaded(phoneme_ids=phoneme_ids, codes=codes, codebook_index=3, frame_phoneme_ids=aligned).logits,
        model(phoneme_ids=phoneme_ids, codes=codes, codebook_index=3, frame_phoneme_ids=aligned).logits,
    )
