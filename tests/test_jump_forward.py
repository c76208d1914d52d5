"""Jump-forward decoding: the rule's forced tokens proposed to stock assisted decoding, and the
in-forward classifier-free guidance it needs (``text_free_guidance``)."""

from __future__ import annotations

import warnings

import pytest
import torch
from conftest import tiny_config
from test_generation import generate, text_prompt
from transformers import LogitsProcessorList

from ella_v_hf import EllaVForCausalLM, EllaVPhonemeAdvanceLogitsProcessor, build_gar_sequence, parse_gar_sequence


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("inline", [True, False])
def test_forced_continuation_names_what_the_rule_forces_and_leaves_its_state(seed, inline):
    """At every step of a random walk, the probe's tokens are exactly the single tokens the rule
    then allows, and a probed rule masks like an unprobed twin."""
    config = tiny_config(local_advance=seed % 3, inline_phonemes=inline)
    space, spec = config.token_space, config.layout_spec
    generator = torch.Generator().manual_seed(seed)
    phonemes = torch.randint(0, 10, (1 + seed,), generator=generator).tolist()
    cap = 1 + seed % 3
    ids = torch.tensor([build_gar_sequence(phonemes, None, None, space, spec).input_ids])
    probed, twin = (EllaVPhonemeAdvanceLogitsProcessor(space, spec, cap) for _ in range(2))
    pending: list[int] = []  # tokens the last probe said would be forced, not yet generated
    proposals = 0
    for _ in range(len(phonemes) * (cap + 2) + 2):
        if not pending:
            pending = probed.forced_continuation(ids)
            proposals += len(pending)
        logits = torch.randn(1, space.vocab_size, generator=generator)
        scores = probed(ids, logits.clone())
        assert torch.equal(scores, twin(ids, logits.clone()))
        allowed = torch.isfinite(scores[0]) & (scores[0] > torch.finfo(scores.dtype).min)
        if pending:  # a forced step: one token allowed, the probed one
            assert allowed.nonzero().flatten().tolist() == [pending.pop(0)]
        elif allowed.sum() == 1 and int(allowed.nonzero()) != space.PAD:
            pytest.fail(f"step {ids.shape[1]} forced {int(allowed.nonzero())} but the probe named nothing")
        token = torch.multinomial(scores[0].softmax(-1), 1, generator=generator)
        ids = torch.cat([ids, token[None]], dim=1)
        if int(token) == space.EOS:
            break
    parsed = parse_gar_sequence(ids[0].tolist(), space, spec)
    assert parsed.complete and parsed.phonemes == phonemes
    assert proposals >= len(phonemes)  # every phoneme (and EOS) after BOS / an EOP was proposed
    # Two rows or the VALL-E layout: nothing is proposed.
    assert probed.forced_continuation(torch.cat([ids, ids])) == []
    vall_e = tiny_config(layout="vall-e")
    rule = EllaVPhonemeAdvanceLogitsProcessor(vall_e.token_space, vall_e.layout_spec, 3)
    assert rule.forced_continuation(torch.tensor([text_prompt(EllaVForCausalLM(vall_e), [1, 2])])) == []


def test_forced_continuation_at_the_frame_cap_names_eop_and_the_next_phoneme():
    config = tiny_config(local_advance=0)
    space, spec = config.token_space, config.layout_spec
    frame = space.acoustic_offset
    rule = EllaVPhonemeAdvanceLogitsProcessor(space, spec, 2)
    prompt = build_gar_sequence([3, 4], None, None, space, spec).input_ids  # prefix, BOS, first phoneme
    first, second = space.phoneme_tensor([3, 4]).tolist()
    assert prompt[-2:] == [space.BOS, first]
    assert rule.forced_continuation(torch.tensor([prompt[:-1]])) == [first]  # after BOS
    assert rule.forced_continuation(torch.tensor([prompt])) == []  # a frame is drawn
    ids = torch.tensor([[*prompt, frame, frame]])  # phoneme 1 at the cap (2 frames)
    assert rule.forced_continuation(ids) == [space.EOP, second]
    ids = torch.tensor([[*prompt, frame, space.EOP, second, frame, space.EOP]])
    assert rule.forced_continuation(ids) == [space.EOS]


@pytest.mark.parametrize("sampling", [dict(do_sample=False), dict(do_sample=True, top_p=0.9)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_jump_forward_generation_keeps_the_structure_in_fewer_steps(sampling, seed):
    torch.manual_seed(seed)
    model = EllaVForCausalLM(tiny_config(local_advance=1)).eval()
    space, spec = model.config.token_space, model.config.layout_spec
    phonemes = [1, 5, 2, 7, 3][: 2 + seed]
    prompt = [text_prompt(model, phonemes)]
    forwards = []
    hook = model.register_forward_hook(lambda module, args, kwargs_out: forwards.append(1))
    try:
        torch.manual_seed(seed)
        plain, _, length, _ = generate(model, prompt, 3, **sampling)
        steps_plain, forwards[:] = len(forwards), []
        torch.manual_seed(seed)
        jumped, rule, _, _ = generate(model, prompt, 3, jump_forward=True, **sampling)
        steps_jumped = len(forwards)
    finally:
        hook.remove()
    parsed = parse_gar_sequence(jumped[0].tolist(), space, spec)  # strict
    assert parsed.complete and parsed.phonemes == phonemes and max(parsed.frame_counts) <= 3
    tokens = int((jumped[0, length:] != space.PAD).sum())
    assert steps_jumped <= tokens - len(phonemes)  # every forced phoneme (and EOS) rode along
    if not sampling["do_sample"]:
        assert torch.equal(plain, jumped) and steps_jumped < steps_plain


def test_jump_forward_with_guidance_in_the_forward_matches_step_by_step_guidance():
    from ella_v_hf.modeling.modeling_ella_v import text_free_guidance_scores

    torch.manual_seed(0)
    model = EllaVForCausalLM(tiny_config(text_dropout=0.1)).eval()
    prompt = [text_prompt(model, [1, 2, 3, 4])]
    in_forward, _, _, _ = generate(model, prompt, 4, text_free_rows=True, text_free_guidance=2.5, do_sample=False)
    jumped, _, _, _ = generate(model, prompt, 4, text_free_rows=True, text_free_guidance=2.5, do_sample=False, jump_forward=True)
    assert torch.equal(in_forward, jumped)
    # The forward's guided scores are log p_u + w (log p_c - log p_u) of the two rows' logits.
    space = model.config.token_space
    ids = torch.tensor(prompt)
    rows = torch.cat([ids, space.without_text(ids)])
    with torch.no_grad():
        both = model(rows).logits  # [2, L, V]
        guided = model(rows, text_free_guidance=2.5).logits  # [1, L, V]
    c, u = both[:1, -1].log_softmax(-1), both[1:, -1].log_softmax(-1)
    torch.testing.assert_close(guided[:, -1], u + 2.5 * (c - u))
    torch.testing.assert_close(guided[:, -1], text_free_guidance_scores(both[:, -1], 2.5))
    with pytest.raises(ValueError, match="2B rows"):
        model(ids, text_free_guidance=2.5)


def test_jump_forward_refuses_what_it_cannot_do():
    model = EllaVForCausalLM(tiny_config()).eval()
    space = model.config.token_space
    ids = torch.tensor([text_prompt(model, [1, 2])])
    common = dict(max_new_tokens=8, eos_token_id=space.EOS, pad_token_id=space.PAD, jump_forward=True)
    with pytest.raises(ValueError, match="phoneme-advance rule"):
        model.generate(ids, **common)
    rule = LogitsProcessorList([EllaVPhonemeAdvanceLogitsProcessor(space, model.config.layout_spec, 3)])
    with pytest.raises(ValueError, match="prompt_lookup_num_tokens"):
        model.generate(ids, logits_processor=rule, prompt_lookup_num_tokens=3, **common)
    with pytest.raises(ValueError, match="batch_size = 1"):  # stock assisted decoding's own limit
        model.generate(torch.cat([ids, ids]), logits_processor=rule, **common)
    assert getattr(model, "_forced_token_candidates", None) is None  # nothing left behind after a failure


def test_tts_jump_forward_is_opt_in_and_draws_the_same_greedy_speech(tts_model, tts_dir):
    from ella_v_hf.processing import EllaVProcessor

    processor = EllaVProcessor.from_pretrained(tts_dir)
    inputs = processor(["Hello there, a short test."])
    calls = []
    original = tts_model.gar.generate

    def spy(*args, **kwargs):
        calls.append(kwargs.get("jump_forward"))
        return original(*args, **kwargs)

    tts_model.gar.generate = spy
    try:
        plain = tts_model.generate(**inputs, do_sample=False)  # the default: step by step
        jumped = tts_model.generate(**inputs, do_sample=False, jump_forward=True)
        sampled = tts_model.generate(**inputs, num_return_sequences=2, jump_forward=True)  # two rows: plain decoding
    finally:
        del tts_model.gar.generate
    assert calls == [False, True, False]
    assert torch.equal(plain.sequences, jumped.sequences) and torch.equal(plain.audio, jumped.audio)
    assert not sampled.infinite.any()
    with pytest.raises(ValueError, match="jump_forward"):
        tts_model.generate(**inputs, jump_forward="yes")


def test_jump_forward_on_an_unverified_transformers_warns_once_and_decodes_step_by_step(monkeypatch):
    """The fall-back when the candidate-generator contract is not the verified one: one warning,
    no assisted decoding, the step-by-step result."""
    from ella_v_hf.modeling import transformers_compat

    model = EllaVForCausalLM(tiny_config(local_advance=1)).eval()
    prompt = [text_prompt(model, [1, 5, 2])]
    plain, _, _, _ = generate(model, prompt, 3, do_sample=False)
    monkeypatch.setattr(transformers_compat, "JUMP_FORWARD_VERIFIED", ("4.99",))
    monkeypatch.setattr(transformers_compat, "_warned", set())
    assisted = []
    monkeypatch.setattr(type(model), "_get_candidate_generator", lambda self, *a, **k: assisted.append(1))
    with pytest.warns(UserWarning, match="jump_forward=True ignored: its assisted-decoding contract was verified on"):
        first, _, _, _ = generate(model, prompt, 3, do_sample=False, jump_forward=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once: the second call is silent
        second, _, _, _ = generate(model, prompt, 3, do_sample=False, jump_forward=True)
    assert torch.equal(first, plain) and torch.equal(second, plain) and not assisted
