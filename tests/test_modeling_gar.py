"""The GAR model (EllaVForCausalLM): save/load, loss mask, cache, batching, gradients, bf16."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from conftest import random_sequence, tiny_config
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from ella_v_hf import EllaVForCausalLM, EllaVModel, build_gar_sequence


def model_for(**overrides) -> EllaVForCausalLM:
    return EllaVForCausalLM(tiny_config(**overrides)).eval()


def test_forward_shapes_and_loss():
    model = model_for()
    seq = build_gar_sequence([1, 2, 3], [2, 0, 3], [5, 6, 7, 8, 9], model.config.token_space, model.config.layout_spec)
    out = model(torch.tensor([seq.input_ids]), labels=torch.tensor([seq.labels]))
    assert out.logits.shape == (1, len(seq.input_ids), model.config.vocab_size)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert out.cache is not None and out.cache.get_seq_length() == len(seq.input_ids)


def test_save_load_round_trip_identical_logits(tmp_path):
    model = model_for(layout="ella-v", local_advance=2, prefix_bidirectional_attention=True)
    ids = torch.tensor([random_sequence(random.Random(1), model.config)])
    expected = model(ids).logits
    model.save_pretrained(tmp_path)
    files = {p.name for p in tmp_path.iterdir()}
    assert "model.safetensors" in files and not any(f.endswith((".bin", ".pt", ".pkl")) for f in files)
    for loaded in (
        EllaVForCausalLM.from_pretrained(tmp_path),
        AutoModelForCausalLM.from_pretrained(tmp_path),
    ):
        assert loaded.config.local_advance == 2 and loaded.config.prefix_bidirectional_attention
        torch.testing.assert_close(loaded.eval()(ids).logits, expected, rtol=0, atol=0)
    base = AutoModel.from_pretrained(tmp_path)
    assert isinstance(base, EllaVModel)
    torch.testing.assert_close(base(ids).last_hidden_state, model.model(ids).last_hidden_state, rtol=0, atol=0)
    skip = {"_name_or_path", "auto_map", "transformers_version"}
    loaded_config = {k: v for k, v in AutoConfig.from_pretrained(tmp_path).to_dict().items() if k not in skip}
    assert loaded_config == {k: v for k, v in model.config.to_dict().items() if k not in skip}


def test_safe_serialization_only(tmp_path):
    with pytest.raises(ValueError, match="safetensors only"):
        model_for().save_pretrained(tmp_path, safe_serialization=False)


def reference_loss(logits: torch.Tensor, ids: torch.Tensor, config) -> torch.Tensor:
    """Independent of TokenSpace: targets are ids >= acoustic offset, EOP (2) or EOS (3)."""
    targets = ids[:, 1:].clone()
    counted = (targets >= 4 + config.num_phonemes) | (targets == 2) | (targets == 3)
    targets[~counted] = -100
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)


@pytest.mark.parametrize("layout", ["ella-v", "vall-e"])
def test_loss_counts_only_acoustic_eop_eos(layout):
    model = model_for(layout=layout)
    space = model.config.token_space
    ids = torch.tensor([random_sequence(random.Random(3), model.config, n_phonemes=4)])
    labels = ids.clone()  # deliberately unmasked: the model must ignore phoneme/BOS targets itself
    out = model(ids, labels=labels)
    torch.testing.assert_close(out.loss, reference_loss(out.logits, ids, model.config))

    phoneme_positions = [i for i in range(1, ids.shape[1]) if space.is_phoneme(int(ids[0, i]))]
    acoustic_positions = [i for i in range(1, ids.shape[1]) if space.is_acoustic(int(ids[0, i]))]
    assert phoneme_positions and acoustic_positions
    changed = labels.clone()
    for i in phoneme_positions:
        changed[0, i] = space.phoneme_offset + (int(labels[0, i]) - space.phoneme_offset + 1) % space.num_phonemes
    changed[0, 0] = space.BOS
    assert torch.equal(model(ids, labels=changed).loss, out.loss)
    changed = labels.clone()
    i = acoustic_positions[0]
    changed[0, i] = space.acoustic_offset + (int(labels[0, i]) - space.acoustic_offset + 1) % space.codebook_size
    assert not torch.equal(model(ids, labels=changed).loss, out.loss)


def test_loss_normalises_by_num_items_in_batch():
    model = model_for()
    ids = torch.tensor([random_sequence(random.Random(4), model.config)])
    out = model(ids, labels=ids)
    count = int(model.config.token_space.loss_target_mask(ids[:, 1:]).sum())
    scaled = model(ids, labels=ids, num_items_in_batch=torch.tensor(2 * count))
    torch.testing.assert_close(scaled.loss, out.loss / 2)


def test_causality():
    model = model_for()
    ids = torch.tensor([random_sequence(random.Random(5), model.config, n_phonemes=4)])
    changed = ids.clone()
    changed[0, -2] = model.config.token_space.acoustic_offset if changed[0, -2] != model.config.token_space.acoustic_offset else changed[0, -2] + 1
    torch.testing.assert_close(model(ids).logits[:, :-2], model(changed).logits[:, :-2])


def test_bidirectional_prefix():
    model = model_for(prefix_bidirectional_attention=True)
    space = model.config.token_space
    ids = torch.tensor([random_sequence(random.Random(6), model.config, n_phonemes=4)])
    prefix_end = int((ids[0] == space.BOS).nonzero()[0])
    changed = ids.clone()
    changed[0, prefix_end - 1] = space.phoneme_offset + (int(ids[0, prefix_end - 1]) - space.phoneme_offset + 1) % space.num_phonemes
    # The first prefix token now sees the last one ...
    assert not torch.allclose(model(ids).logits[:, 0], model(changed).logits[:, 0])
    # ... while the acoustic part stays causal.
    changed = ids.clone()
    changed[0, -2] = space.acoustic_offset + (int(ids[0, -2]) - space.acoustic_offset + 1) % space.codebook_size
    torch.testing.assert_close(model(ids).logits[:, :-2], model(changed).logits[:, :-2])
    # The causal model does not look ahead in its prefix.
    causal = model_for()
    changed = ids.clone()
    changed[0, prefix_end - 1] = space.phoneme_offset
    torch.testing.assert_close(causal(ids).logits[:, : prefix_end - 1], causal(changed).logits[:, : prefix_end - 1])


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_kv_cache_matches_no_cache(bidirectional, attn):
    model = model_for(prefix_bidirectional_attention=bidirectional)
    model.set_attn_implementation(attn)
    ids = torch.tensor([random_sequence(random.Random(7), model.config, n_phonemes=4)])
    full = model(ids, use_cache=False).logits
    start = int((ids[0] == 1).nonzero()[0]) + 1  # prefill up to and including BOS
    out = model(ids[:, :start], use_cache=True)
    steps = [out.logits]
    cache = out.cache
    for t in range(start, ids.shape[1]):
        out = model(ids[:, t : t + 1], cache=cache, use_cache=True)
        cache = out.cache
        steps.append(out.logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-4, atol=1e-5)


def pad_batch(rows: list[list[int]], side: str) -> tuple[torch.Tensor, torch.Tensor]:
    length = max(map(len, rows))
    ids = torch.zeros(len(rows), length, dtype=torch.long)
    mask = torch.zeros(len(rows), length, dtype=torch.long)
    for i, row in enumerate(rows):
        sl = slice(length - len(row), length) if side == "left" else slice(0, len(row))
        ids[i, sl] = torch.tensor(row)
        mask[i, sl] = 1
    return ids, mask


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("side", ["left", "right"])
def test_padded_batch_matches_single_rows(side, bidirectional):
    model = model_for(prefix_bidirectional_attention=bidirectional)
    rng = random.Random(8)
    rows = [random_sequence(rng, model.config, n_phonemes=2), random_sequence(rng, model.config, n_phonemes=5)]
    assert len(rows[0]) != len(rows[1])
    ids, mask = pad_batch(rows, side)
    labels = ids.masked_fill(mask == 0, -100)
    batch = model(ids, attention_mask=mask, labels=labels)
    total, count = 0.0, 0
    for i, row in enumerate(rows):
        single = model(torch.tensor([row]), labels=torch.tensor([row]))
        valid = mask[i].bool()
        torch.testing.assert_close(batch.logits[i, valid], single.logits[0], rtol=1e-4, atol=1e-5)
        n = int(model.config.token_space.loss_target_mask(torch.tensor(row[1:])).sum())
        total, count = total + single.loss * n, count + n
    torch.testing.assert_close(batch.loss, total / count, rtol=1e-4, atol=1e-5)


def test_generate_cache_no_cache_and_batch_agree():
    model = model_for()
    rng = random.Random(9)
    prompts = [random_sequence(rng, model.config, n_phonemes=3)[:-4], random_sequence(rng, model.config, n_phonemes=5)[:-6]]
    kwargs = dict(max_new_tokens=12, min_new_tokens=12, do_sample=False)
    singles = []
    for prompt in prompts:
        ids = torch.tensor([prompt])
        with_cache = model.generate(ids, use_cache=True, **kwargs)
        without = model.generate(ids, use_cache=False, **kwargs)
        assert torch.equal(with_cache, without)
        singles.append(with_cache[0, len(prompt) :])
    ids, mask = pad_batch(prompts, "left")
    batched = model.generate(ids, attention_mask=mask, **kwargs)
    for i, single in enumerate(singles):
        assert torch.equal(batched[i, ids.shape[1] :], single)


def test_gradients_reach_every_parameter():
    model = model_for(prefix_bidirectional_attention=True).train()
    rng = random.Random(10)
    ids, mask = pad_batch([random_sequence(rng, model.config) for _ in range(3)], "right")
    model(ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_gradient_checkpointing_matches():
    model = model_for().train()
    ids = torch.tensor([random_sequence(random.Random(11), model.config)])
    model(ids, labels=ids).loss.backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.activation_checkpointing_enable()
    model(ids, labels=ids, use_cache=False).loss.backward()
    for name, param in model.named_parameters():
        torch.testing.assert_close(param.grad, expected[name], rtol=1e-4, atol=1e-6)


def test_bf16_autocast_on_cpu():
    model = model_for().train()
    ids = torch.tensor([random_sequence(random.Random(12), model.config)])
    fp32 = model(ids, labels=ids).loss
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(ids, labels=ids)
    assert out.logits.dtype == torch.bfloat16
    assert torch.isfinite(out.loss)
    torch.testing.assert_close(out.loss.float(), fp32, rtol=5e-2, atol=5e-2)
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_rejects_ids_outside_the_token_space():
    model = model_for()
    with pytest.raises(ValueError, match="flat ELLA-V token space"):
        model(torch.tensor([[1, model.config.vocab_size]]))
