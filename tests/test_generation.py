"""Generation: the phoneme-advance LogitsProcessor in stock generate(), the TTS model, pipeline, CLI."""

from __future__ import annotations

import copy
import random
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import tiny_config
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import LogitsProcessorList

from ella_v_hf import EllaVForCausalLM, EllaVPhonemeAdvanceLogitsProcessor, build_gar_sequence, parse_gar_sequence


def generate(model, prompts: list[list[int]], cap: int, before=(), eop_quantile=None, **kwargs):
    space, spec = model.config.token_space, model.config.layout_spec
    length = max(map(len, prompts))
    ids = torch.zeros(len(prompts), length, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, length - len(p) :] = torch.tensor(p)
        mask[i, length - len(p) :] = 1
    processor = EllaVPhonemeAdvanceLogitsProcessor(space, spec, cap, eop_quantile=eop_quantile)
    n = max(len(parse_gar_sequence(p, space, spec).prefix_phonemes) for p in prompts)
    bound = n * (cap + 2) + 2
    out = model.generate(
        ids, attention_mask=mask, logits_processor=LogitsProcessorList([*before, processor]), max_new_tokens=bound,
        eos_token_id=space.EOS, pad_token_id=space.PAD, **kwargs,
    )
    return out, processor, length, bound


def text_prompt(model, phonemes):
    return build_gar_sequence(phonemes, None, None, model.config.token_space, model.config.layout_spec).input_ids


SAMPLING = [dict(do_sample=False), dict(do_sample=True, top_p=0.9), dict(do_sample=True, temperature=1.5, top_k=5)]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("sampling", SAMPLING)
def test_generated_sequences_keep_the_ella_v_structure(seed, sampling):
    torch.manual_seed(seed)
    model = EllaVForCausalLM(tiny_config(local_advance=1)).eval()
    space, spec = model.config.token_space, model.config.layout_spec
    rng = random.Random(seed)
    rows = [[rng.randrange(10) for _ in range(rng.randint(1, 7))] for _ in range(3)]
    # One row continues an aligned prompt (2 phonemes, 4 frames) into the rest of its text.
    rows.append([1, 2, 3, 4])
    prompts = [text_prompt(model, r) for r in rows[:3]]
    prompts.append(build_gar_sequence(rows[3], [1, 3], [5, 6, 7, 8], space, spec).input_ids)
    cap = 3
    out, processor, prompt_len, bound = generate(model, prompts, cap, **sampling)
    assert out.shape[1] - prompt_len <= bound
    for i, row in enumerate(rows):
        seq = [t for t in out[i].tolist()]
        parsed = parse_gar_sequence(seq, space, spec)  # strict: raises on any structural violation
        assert parsed.complete, f"row {i} did not end with EOS"
        assert parsed.phonemes == row and parsed.closed_phonemes == len(row)
        generated = out[i, prompt_len:].tolist()
        end = generated.index(space.EOS)
        assert all(t == space.PAD for t in generated[end + 1 :])
        assert seq[: len(seq)].count(space.EOS) == 1
        assert max(parsed.frame_counts) <= cap
        assert processor.cuts[i] <= sum(1 for c in parsed.frame_counts if c == cap)


def test_no_global_advance_needs_and_uses_given_phonemes():
    torch.manual_seed(0)
    model = EllaVForCausalLM(tiny_config(global_advance=False)).eval()
    space, spec = model.config.token_space, model.config.layout_spec
    rows = [[1, 2, 3], [4, 5]]
    prompts = [text_prompt(model, r) for r in rows]  # "BOS P1": the rest of the text is not in the sequence
    with pytest.raises(ValueError, match="pass phonemes"):
        EllaVPhonemeAdvanceLogitsProcessor(space, spec, 4)
    processor = EllaVPhonemeAdvanceLogitsProcessor(space, spec, 4, phonemes=rows)
    length = max(map(len, prompts))
    ids = torch.tensor([[0] * (length - len(p)) + p for p in prompts])
    mask = (ids != 0).long()
    out = model.generate(ids, attention_mask=mask, logits_processor=LogitsProcessorList([processor]), max_new_tokens=3 * 6 + 2,
                         do_sample=True, eos_token_id=space.EOS, pad_token_id=space.PAD)
    for i, row in enumerate(rows):
        parsed = parse_gar_sequence(out[i].tolist(), space, spec)
        assert parsed.complete and parsed.phonemes == row and max(parsed.frame_counts) <= 4


def test_cut_forces_eop_at_the_cap():
    model = EllaVForCausalLM(tiny_config()).eval()
    space = model.config.token_space

    def never_eop(input_ids, scores):  # a model that would never close a phoneme by itself
        return scores.index_fill(1, torch.tensor([space.EOP]), -1e4)

    out, processor, prompt_len, _ = generate(model, [text_prompt(model, [1, 2, 3])], cap=4, before=[never_eop], do_sample=False)
    parsed = parse_gar_sequence(out[0].tolist(), space, model.config.layout_spec)
    assert parsed.frame_counts == [4, 4, 4] and processor.cuts.tolist() == [3]


def constant_eop_probability(space, probability: float):
    """A before-processor that gives EOP ``probability`` among the sampleable tokens (acoustic codes + EOP)."""
    logit = float(np.log(probability / (1 - probability) * space.codebook_size))

    def processor(input_ids, scores):
        scores = torch.zeros_like(scores)
        scores[:, space.EOP] = logit
        return scores

    return processor


@pytest.mark.parametrize("sampling", SAMPLING)
@pytest.mark.parametrize(
    ("quantile", "cap", "frames", "cuts"),
    [
        (0.5, 8, 1, 0),  # P(ended) = 1 - 0.7^t: 0.30 after the first free step, 0.51 after the second -> EOP there
        (0.9, 8, 6, 0),  # 1 - 0.7^6 = 0.88, 1 - 0.7^7 = 0.92
        (0.9, 4, 4, 3),  # the frame cap still comes first
    ],
)
def test_eop_quantile_places_eop_where_the_phoneme_has_probably_ended(sampling, quantile, cap, frames, cuts):
    """With EOP probability 0.3 at every step, ``eop_quantile=q`` ends each phoneme at the first step
    where ``1 - 0.7^t >= q`` whatever the sampler (EOP is never sampled freely), and the cap still holds."""
    torch.manual_seed(0)
    model = EllaVForCausalLM(tiny_config(local_advance=1)).eval()
    space, spec = model.config.token_space, model.config.layout_spec
    prompts = [text_prompt(model, [1, 2, 3])]
    processor = EllaVPhonemeAdvanceLogitsProcessor(space, spec, cap, eop_quantile=quantile)
    out = model.generate(
        torch.tensor(prompts), logits_processor=LogitsProcessorList([constant_eop_probability(space, 0.3), processor]),
        max_new_tokens=3 * (cap + 2) + 2, eos_token_id=space.EOS, pad_token_id=space.PAD, **sampling,
    )
    parsed = parse_gar_sequence(out[0].tolist(), space, spec)
    assert parsed.complete and parsed.phonemes == [1, 2, 3]
    assert parsed.frame_counts == [frames] * 3 and processor.cuts.tolist() == [cuts]


def test_eop_quantile_is_checked():
    model = EllaVForCausalLM(tiny_config()).eval()
    space = model.config.token_space
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match=r"eop_quantile must be a number in \(0, 1\)"):
            EllaVPhonemeAdvanceLogitsProcessor(space, model.config.layout_spec, 4, eop_quantile=bad)
    vall_e = tiny_config(layout="vall-e")
    with pytest.raises(ValueError, match="VALL-E layout has no EOP"):
        EllaVPhonemeAdvanceLogitsProcessor(vall_e.token_space, vall_e.layout_spec, 4, eop_quantile=0.5)


@pytest.mark.parametrize("eop_quantile", [None, 0.1])  # 0.1: an untrained model's phonemes end after a few frames
def test_cache_no_cache_and_batch_generation_agree(eop_quantile):
    model = EllaVForCausalLM(tiny_config()).eval()
    rows = [[1, 2], [3, 4, 5, 6, 7]]
    prompts = [text_prompt(model, r) for r in rows]
    singles = []
    for prompt in prompts:
        with_cache, _, length, _ = generate(model, [prompt], 5, do_sample=False, use_cache=True, eop_quantile=eop_quantile)
        without, _, _, _ = generate(model, [prompt], 5, do_sample=False, use_cache=False, eop_quantile=eop_quantile)
        assert torch.equal(with_cache, without)
        singles.append(with_cache[0, length:].tolist())
    batch, processor, length, _ = generate(model, prompts, 5, do_sample=False, eop_quantile=eop_quantile)
    for i, single in enumerate(singles):
        got = batch[i, length:].tolist()
        assert got[: len(single)] == single and all(t == 0 for t in got[len(single) :])
    assert (processor.cuts.sum() == 0) == (eop_quantile is not None)  # the quantile, not the cap, ends phonemes


def test_static_cache_and_compiled_decoding_agree_with_eager(cxx_compiler):
    """generate()'s own speed options (the bench's compiled path) keep the forced structure's tokens."""
    from ella_v_hf.evaluation.bench import compiled_options

    model = EllaVForCausalLM(tiny_config()).eval()
    prompts = [text_prompt(model, [1, 2, 3]), text_prompt(model, [4, 5, 6])]
    eager, _, _, _ = generate(model, prompts, 5, do_sample=False)
    static, _, _, _ = generate(model, prompts, 5, do_sample=False, cache_implementation="static", disable_compile=True)
    compiled, _, _, _ = generate(model, prompts, 5, do_sample=False, **compiled_options())
    assert torch.equal(eager, static) and torch.equal(eager, compiled)


@pytest.mark.parametrize("attention_bias, dtype", [(False, "float16"), (True, "float16"), (False, "bfloat16")])
def test_half_precision_decoding_steps(attention_bias, dtype):
    """decode_weight_dtype: generate()'s decoding steps (<= MAX_DECODE_ROWS rows) read half-precision
    copies of the weights; their logits stay within that rounding of the float32 model's, every
    forward outside generate() stays float32, and the copies follow the weights."""
    from ella_v_hf.modeling.decode_weights import HalfDecodeMixin

    torch.manual_seed(0)
    half = getattr(torch, dtype)
    model = EllaVForCausalLM(tiny_config(attention_bias=attention_bias, decode_weight_dtype=dtype)).eval()
    exact = EllaVForCausalLM(tiny_config(attention_bias=attention_bias)).eval()
    exact.load_state_dict(model.state_dict())
    with torch.no_grad():  # non-zero biases, so the fused half path must add them
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):
                parameter.normal_(0, 0.1)
        exact.load_state_dict(model.state_dict())
    space, spec = model.config.token_space, model.config.layout_spec
    prompts = [text_prompt(model, [1, 2, 3, 4])]
    out, _, length, _ = generate(model, prompts, 4, do_sample=False, return_dict_in_generate=True, output_logits=True)
    sequences = out.sequences
    assert parse_gar_sequence(sequences[0].tolist(), space, spec, strict=False).complete
    with torch.no_grad():
        reference = exact(sequences).logits[0]  # [L, V], float32 throughout
        assert torch.equal(model(sequences).logits, exact(sequences).logits)  # outside generate(): float32
    steps = torch.stack([logits[0] for logits in out.logits])  # [steps, V]
    target = reference[length - 1 : length - 1 + len(steps)]
    differences = (steps - target).abs().max(-1).values  # [steps]
    tolerance = 2e-2 if dtype == "float16" else 5e-2  # bfloat16 keeps 8 bits of mantissa, float16 11
    assert differences.max() < tolerance * target.abs().max() and differences.max() > 0  # the half path ran
    halves = [m for m in model.modules() if isinstance(m, HalfDecodeMixin)]
    assert len(halves) == 2 * model.config.num_hidden_layers + 1 and not any(m._half_active for m in halves)
    head, _ = model._half_store["head"]
    assert head.dtype == half and torch.equal(head, model.lm_head.weight.to(half))
    q, _ = model.model.layers[0].self_attn._half_store["qkv"]
    assert torch.equal(q[: model.config.hidden_size], model.model.layers[0].self_attn.q_proj.weight.to(half))
    with torch.no_grad():  # a change to the weights (even through .data) is seen by the next call
        model.lm_head.weight.data.mul_(-1)
        exact.lm_head.weight.data.mul_(-1)
    generate(model, prompts, 4, do_sample=False)
    assert torch.equal(model._half_store["head"][0], model.lm_head.weight.to(half))
    # A batch with more rows than MAX_DECODE_ROWS decodes in float32: the exact model's tokens.
    many = [text_prompt(model, [1 + i, 2, 3]) for i in range(5)]
    assert torch.equal(generate(model, many, 4, do_sample=False)[0], generate(exact, many, 4, do_sample=False)[0])
    with pytest.raises(ValueError, match="decode_weight_dtype"):
        tiny_config(decode_weight_dtype="half")


def test_half_precision_decoding_compiled_agrees_with_eager(cxx_compiler):
    """The half copies are graph inputs of the compiled step, not constants: refreshed weights are
    used; and the compiled decoding step is one graph (a graph break costs ~25 % of its speed)."""
    from torch._dynamo.utils import counters

    from ella_v_hf.evaluation.bench import compiled_options

    model = EllaVForCausalLM(tiny_config(decode_weight_dtype="float16")).eval()
    prompts = [text_prompt(model, [1, 2, 3])]
    options = compiled_options()
    counters.clear()
    for _ in range(2):
        eager, _, _, _ = generate(model, prompts, 5, do_sample=False)
        compiled, _, _, _ = generate(model, prompts, 5, do_sample=False, **options)
        assert torch.equal(eager, compiled)
        with torch.no_grad():
            model.lm_head.weight.mul_(-1)
    assert not counters["graph_break"], dict(counters["graph_break"])


@pytest.mark.parametrize("layout", [dict(local_advance=1), dict(layout="vall-e")])
@pytest.mark.parametrize("sampling", [dict(do_sample=False), dict(do_sample=True, top_p=0.9)])
def test_guided_generation_keeps_the_structure_and_its_text_free_rows_see_no_text(sampling, layout):
    torch.manual_seed(0)
    model = EllaVForCausalLM(tiny_config(text_dropout=0.1, **layout)).eval()
    space, spec = model.config.token_space, model.config.layout_spec
    rows = [[1, 2, 3], [4, 5, 6, 7, 8], [9]]
    prompts = [text_prompt(model, r) for r in rows]
    seen = []  # (input_ids, guided scores) as the first processor receives them

    def record(input_ids, scores):
        seen.append((input_ids.clone(), scores.clone()))
        return scores

    sequences, processor, length, _ = generate(model, prompts, 4, before=[record], text_free_rows=True, text_free_guidance=3.0,
                                               **sampling)
    for i, row in enumerate(rows):
        parsed = parse_gar_sequence(sequences[i].tolist(), space, spec, strict=False)
        assert parsed.prefix_phonemes == row
        if spec.interleaved:  # ELLA-V's forced structure (VALL-E's random GAR may run to the bound)
            assert parsed.complete and parsed.phonemes == row
    # The cached 2B-row steps give what uncached forwards over the sequences and their text-free
    # copies give: log p_u + w (log p_c - log p_u).
    blank = space.without_text(sequences)
    assert not space.phoneme_mask(blank).any() and torch.equal(blank != sequences, space.phoneme_mask(sequences))
    mask = (torch.arange(sequences.shape[1]) >= length - torch.tensor([len(p) for p in prompts])[:, None]).long()
    with torch.no_grad():
        conditional = model(sequences, attention_mask=mask).logits  # [B, L, V]
        unconditional = model(blank, attention_mask=mask).logits
    for step, (input_ids, scores) in enumerate(seen):
        position = length + step - 1
        assert scores.shape[0] == len(rows) and torch.equal(input_ids, sequences[:, : position + 1])
        c, u = conditional[:, position].log_softmax(-1), unconditional[:, position].log_softmax(-1)
        assert torch.allclose(scores, u + 3.0 * (c - u), atol=1e-4)
    # guidance_scale = 1 is plain decoding.
    plain, _, _, _ = generate(model, prompts, 4, do_sample=False)
    assert torch.equal(generate(model, prompts, 4, do_sample=False, text_free_rows=True, text_free_guidance=1.0)[0], plain)
    for bad in (0, -1.0, "2", True):
        with pytest.raises(ValueError, match="guidance_scale"):
            generate(model, prompts, 4, do_sample=False, text_free_rows=True, text_free_guidance=bad)
    for half in (dict(text_free_rows=True), dict(text_free_guidance=2.0)):  # one path: both or neither
        with pytest.raises(ValueError, match="takes both text_free_rows=True"):
            generate(model, prompts, 4, do_sample=False, **half)


def test_guided_generation_with_a_static_cache_agrees_with_the_dynamic_one():
    """The text-free rows double the batch; generate()'s static cache sizes itself from them."""
    torch.manual_seed(0)
    model = EllaVForCausalLM(tiny_config(text_dropout=0.1)).eval()
    prompts = [text_prompt(model, [1, 2, 3]), text_prompt(model, [4, 5])]
    guided = dict(text_free_rows=True, text_free_guidance=2.0, do_sample=False)
    dynamic, _, _, _ = generate(model, prompts, 5, **guided)
    static, _, _, _ = generate(model, prompts, 5, cache_implementation="static", disable_compile=True, **guided)
    assert torch.equal(dynamic, static)


def test_vall_e_layout_samples_eos_and_can_run_forever():
    model = EllaVForCausalLM(tiny_config(layout="vall-e")).eval()
    space, spec = model.config.token_space, model.config.layout_spec

    def never_eos(input_ids, scores):  # a model that never stops
        return scores.index_fill(1, torch.tensor([space.EOS]), -1e4)

    prompt = text_prompt(model, [1, 2, 3])
    processor = EllaVPhonemeAdvanceLogitsProcessor(space, spec, 5)
    out = model.generate(
        torch.tensor([prompt]), logits_processor=LogitsProcessorList([never_eos, processor]), max_new_tokens=12, do_sample=True,
        eos_token_id=space.EOS, pad_token_id=space.PAD,
    )
    parsed = parse_gar_sequence(out[0].tolist(), space, spec)
    assert not parsed.complete and len(parsed.codes) == 12  # hit the cap: counted as INF by callers
    assert all(space.is_acoustic(t) for t in out[0, len(prompt) :].tolist())


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**16), st.lists(st.integers(0, 9), min_size=1, max_size=6), st.integers(1, 4), st.integers(0, 2), st.booleans())
def test_processor_state_matches_a_fresh_parse_at_every_step(seed, phonemes, cap, advance, inline):
    """Drive the processor with random logits and compare its O(1) state with the layout parser."""
    config = tiny_config(local_advance=advance, inline_phonemes=inline)
    space, spec = config.token_space, config.layout_spec
    generator = torch.Generator().manual_seed(seed)
    ids = torch.tensor([build_gar_sequence(phonemes, None, None, space, spec).input_ids])
    processor = EllaVPhonemeAdvanceLogitsProcessor(space, spec, cap)
    for _ in range(len(phonemes) * (cap + 2) + 2):
        scores = processor(ids, torch.randn(1, space.vocab_size, generator=generator))
        parsed = parse_gar_sequence(ids[0].tolist(), space, spec)
        assert int(processor.opened[0]) == len(parsed.phonemes)
        assert bool(processor.in_phone[0]) == (len(parsed.phonemes) > parsed.closed_phonemes)
        assert bool(processor.done[0]) == parsed.complete
        if processor.in_phone[0]:
            assert int(processor.frames_in_phone[0]) == parsed.frame_counts[-1]
        if parsed.complete:
            break
        probs = torch.softmax(scores[0], -1)
        token = torch.multinomial(probs, 1, generator=generator)
        ids = torch.cat([ids, token[None]], dim=1)
    assert parse_gar_sequence(ids[0].tolist(), space, spec).complete


def test_a_reused_processor_starts_afresh_on_a_new_prompt():
    """A prompt exactly one token longer than where the previous call stopped used to be taken for
    a continuation: the previous call's phonemes were forced into it."""
    torch.manual_seed(0)
    model = EllaVForCausalLM(tiny_config()).eval()
    space, spec = model.config.token_space, model.config.layout_spec
    processor = EllaVPhonemeAdvanceLogitsProcessor(space, spec, 3)
    first = model.generate(torch.tensor([text_prompt(model, [1, 2, 3, 4, 5])]), logits_processor=LogitsProcessorList([processor]),
                           max_new_tokens=30, do_sample=False, eos_token_id=space.EOS, pad_token_id=space.PAD)
    seen = processor._previous.shape[1]  # where the previous call stopped
    prompt = text_prompt(model, [7, 8])
    ids = torch.tensor([[space.PAD] * (seen + 1 - len(prompt)) + prompt])
    out = model.generate(ids, attention_mask=(ids != space.PAD).long(), logits_processor=LogitsProcessorList([processor]),
                         max_new_tokens=30, do_sample=True, eos_token_id=space.EOS, pad_token_id=space.PAD)
    parsed = parse_gar_sequence(out[0].tolist(), space, spec)  # strict: no foreign phoneme forced in
    assert parse_gar_sequence(first[0].tolist(), space, spec).phonemes == [1, 2, 3, 4, 5]
    assert parsed.complete and parsed.phonemes == [7, 8]


def test_processor_rejects_prompts_without_bos():
    config = tiny_config()
    processor = EllaVPhonemeAdvanceLogitsProcessor(config.token_space, config.layout_spec, 5)
    with pytest.raises(ValueError, match="no BOS"):
        processor(torch.tensor([[4, 5, 6]]), torch.zeros(1, config.vocab_size))


# -- the text-to-speech model ---------------------------------------------------------------------
def test_tts_generate_with_and_without_prompt(tts_dir, flite_corpus):
    from ella_v_hf import EllaVForTextToSpeech
    from ella_v_hf.processing import EllaVProcessor, load_audio, read_corpus

    model = EllaVForTextToSpeech.from_pretrained(tts_dir).eval()
    processor = EllaVProcessor.from_pretrained(tts_dir)
    torch.manual_seed(0)
    out = model.generate(**processor(["Hello world.", "A longer second sentence, with a comma."]))
    assert out.audio.shape[0] == 2 and (out.audio_lengths > 0).all() and torch.isfinite(out.audio).all()
    assert out.codes[0].shape[0] == model.config.nar_config.num_codebooks
    assert out.audio_lengths.tolist() == [c.shape[-1] * 320 for c in out.codes]
    utterance = read_corpus(flite_corpus)[0][0]
    waveform, rate = load_audio(utterance.audio_path)
    inputs = processor(["Hello world."], prompt_audio=waveform, prompt_text=utterance.text, sampling_rate=rate)
    prompted = model.generate(**inputs, do_sample=False)
    prompt_frames = int(prompted.prompt_frames[0])
    prompt_codes, _ = model.encode_prompt(inputs["prompt_input_values"][0, 0], inputs["prompt_input_ids"][0].tolist())
    assert prompt_codes.shape[-1] == prompt_frames
    parsed = parse_gar_sequence(prompted.sequences[0].tolist(), model.config.gar_config.token_space, model.config.gar_config.layout_spec)
    assert parsed.complete and parsed.codes[:prompt_frames] == prompt_codes[0].tolist()
    assert prompted.codes[0].shape[-1] == len(parsed.codes) - prompt_frames  # the prompt is not returned


def test_tts_generate_merges_and_checks_generation_options(tts_model, tts_dir, tmp_path):
    from transformers import GenerationConfig

    from ella_v_hf import EllaVForTextToSpeech
    from ella_v_hf.modeling import EllaVGenerationConfig
    from ella_v_hf.processing import EllaVProcessor

    model, inputs = tts_model, EllaVProcessor.from_pretrained(tts_dir)(["Hello there."])
    space, spec = model.config.gar_config.token_space, model.config.gar_config.layout_spec
    assert isinstance(model.generation_config, EllaVGenerationConfig)
    assert model.generation_config.max_new_tokens == model.config.gar_config.max_position_embeddings
    for bad, message in [
        (dict(temperature=0.0), "temperature must be a finite number > 0 when sampling"),
        (dict(top_p=1.5), r"top_p must be in \(0, 1\]"),
        (dict(num_beams=2), "does not support num_beams=2"),
        (dict(min_new_tokens=5), "does not support min_new_tokens=5"),
        (dict(max_new_tokens=0), "max_new_tokens"),
        (dict(eop_quantile=1.0), r"eop_quantile must be a number in \(0, 1\)"),
        (dict(guidance_scale=0.0), "guidance_scale must be a number > 0"),
        (dict(guidance_scale=2.0), "needs a GAR trained with text_dropout"),
        (dict(not_an_option=1), "unexpected arguments"),
    ]:
        with pytest.raises(ValueError, match=message):
            model.generate(**inputs, **bad)
    model.generate(**inputs, do_sample=False, temperature=0.0)  # greedy ignores the temperature
    # Greedy through kwargs == greedy through a GenerationConfig; kwargs override the config.
    greedy = model.generate(**inputs, do_sample=False).sequences
    assert torch.equal(model.generate(**inputs, generation_config=GenerationConfig(do_sample=False)).sequences, greedy)
    torch.manual_seed(0)
    sampled = model.generate(**inputs, generation_config=GenerationConfig(do_sample=False), do_sample=True, top_k=3).sequences
    torch.manual_seed(0)
    assert torch.equal(model.generate(**inputs, top_k=3).sequences, sampled)
    # The frame cap from the call; max_new_tokens caps the GAR (the row is then unfinished).
    capped = model.generate(**inputs, max_frames_per_phone=1, do_sample=False)
    assert max(parse_gar_sequence(capped.sequences[0].tolist(), space, spec).frame_counts) == 1
    short = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    prompt = model.build_prompts(inputs["input_ids"], inputs["attention_mask"])[0][0]
    assert short.sequences.shape[1] == len(prompt) + 5 and bool(short.infinite[0])
    # num_return_sequences: that many samples per row.
    torch.manual_seed(1)
    many = model.generate(**inputs, num_return_sequences=3)
    assert many.audio.shape[0] == 3 and len(many.codes) == 3
    # The model's own knobs live in generation_config.json and come back on load.
    model.generation_config.max_frames_per_phone = 2
    try:
        model.save_pretrained(tmp_path / "saved")
    finally:
        model.generation_config.max_frames_per_phone = None
    reloaded = EllaVForTextToSpeech.from_pretrained(tmp_path / "saved").eval()
    assert isinstance(reloaded.generation_config, EllaVGenerationConfig)
    assert reloaded.generation_config.max_frames_per_phone == 2 and reloaded.generation_config.top_p == 0.9
    out = reloaded.generate(**inputs, do_sample=False)
    assert max(parse_gar_sequence(out.sequences[0].tolist(), space, spec).frame_counts) <= 2
    # eop_quantile reaches the GAR's processor: the phoneme lengths follow the rule (untrained: EOP is
    # rarely the single most likely token, so plain greedy runs to the cap), the structure holds.
    plain = model.generate(**inputs, do_sample=False, max_frames_per_phone=6)
    median = model.generate(**inputs, do_sample=False, max_frames_per_phone=6, eop_quantile=0.5)
    plain_parsed = parse_gar_sequence(plain.sequences[0].tolist(), space, spec)
    median_parsed = parse_gar_sequence(median.sequences[0].tolist(), space, spec)
    assert median_parsed.complete and median_parsed.phonemes == plain_parsed.phonemes
    assert median_parsed.frame_counts != plain_parsed.frame_counts


def test_nar_decoding_expected_and_argmax(tts_model, tts_dir):
    """The same GAR and NAR codes either way; ``argmax`` decodes the codes, ``expected`` (the default)
    the NAR's expected code vectors of codebooks 2..K."""
    from ella_v_hf.processing import EllaVProcessor

    model, processor = tts_model, EllaVProcessor.from_pretrained(tts_dir)
    inputs = processor(["Hello there."])
    runs = {}
    for mode in ("argmax", "expected", None):
        torch.manual_seed(0)
        runs[mode] = model.generate(**inputs, do_sample=True, **({} if mode is None else {"nar_decoding": mode}))
    argmax, expected = runs["argmax"], runs["expected"]
    assert torch.equal(argmax.sequences, expected.sequences) and torch.equal(argmax.codes[0], expected.codes[0])
    assert torch.equal(runs[None].audio, expected.audio)  # the default
    length = int(argmax.audio_lengths[0])
    assert length == int(expected.audio_lengths[0]) > 0
    codes = argmax.codes[0]
    assert torch.equal(argmax.audio[0, :length], model.codec.decode(codes[None])[0, 0])
    # The random NAR is unsure, so its expected vectors decode to other audio.
    assert not torch.allclose(expected.audio[0, :length], argmax.audio[0, :length])
    with pytest.raises(ValueError, match="nar_decoding must be one of 'expected', 'argmax', got 'mean'"):
        model.generate(**inputs, nar_decoding="mean")


def test_first_level_recorder_matches_stock_sampling_distribution(tts_model, tts_dir):
    """The recorder's distributions are the ones the stock generate() samples from: its warped scores
    (output_scores) restricted to the first level's codes, with temperature, top-k and top-p together."""
    from transformers import GenerationConfig, LogitsProcessorList

    from ella_v_hf.modeling import EllaVFirstLevelRecorder, EllaVPhonemeAdvanceLogitsProcessor
    from ella_v_hf.processing import EllaVProcessor

    model, processor = tts_model, EllaVProcessor.from_pretrained(tts_dir)
    gar, space, spec = model.gar, model.config.gar_config.token_space, model.config.gar_config.layout_spec
    inputs = processor(["Hello there.", "A second, longer row."])
    prompts, phonemes, _ = model.build_prompts(inputs["input_ids"], inputs["attention_mask"])
    length = max(map(len, prompts))
    ids = torch.full((len(prompts), length), space.PAD, dtype=torch.long)
    for b, prompt in enumerate(prompts):
        ids[b, length - len(prompt):] = torch.tensor(prompt)
    config = GenerationConfig(do_sample=True, temperature=0.7, top_k=20, top_p=0.8, max_new_tokens=40, output_scores=True,
                              return_dict_in_generate=True, eos_token_id=space.EOS, pad_token_id=space.PAD, bos_token_id=space.BOS)
    codes = space.codebook_size - 3  # a first level smaller than the codebook, as the demo codec's
    rule = EllaVPhonemeAdvanceLogitsProcessor(space, spec, 6, phonemes=phonemes, acoustic_codes=codes)
    recorder = EllaVFirstLevelRecorder(space, codes, config)
    torch.manual_seed(0)
    out = gar.generate(ids, attention_mask=(ids != space.PAD).long(), generation_config=config,
                       logits_processor=LogitsProcessorList([rule, recorder]))
    assert len(recorder.steps) == len(out.scores) and recorder.start == length
    offset = space.acoustic_offset
    for step, scores in zip(recorder.steps, out.scores):  # [B, C_1], [B, V]
        acoustic = scores[:, offset: offset + codes]
        stock = acoustic.softmax(-1)
        drawable = torch.isfinite(acoustic).any(-1)
        torch.testing.assert_close(step[drawable], stock[drawable])
        assert (step[~drawable] == 0).all()
    for b in range(2):  # every drawn code had probability > 0 under its recorded distribution
        generated = out.sequences[b, length:].tolist()
        frames = recorder.frame_probabilities(b, generated)
        drawn = [t - offset for t in generated if space.is_acoustic(t)]
        assert frames.shape == (len(drawn), codes)
        if drawn:
            assert (frames[torch.arange(len(drawn)), torch.tensor(drawn)] > 0).all()
            torch.testing.assert_close(frames.sum(-1), torch.ones(len(drawn)))
    with pytest.raises(ValueError, match="needs sampling"):
        EllaVFirstLevelRecorder(space, codes, GenerationConfig(do_sample=False))


def test_first_level_decoding_expected(tts_model, tts_dir):
    """``expected`` draws the same tokens and codes as ``code`` (the default) and decodes the first
    level from the drawn distributions; greedy decoding is the same either way; streaming decodes
    its windows from the same distributions."""
    from ella_v_hf import EllaVAudioStreamer
    from ella_v_hf.processing import EllaVProcessor

    model, processor = tts_model, EllaVProcessor.from_pretrained(tts_dir)
    inputs = processor(["Hello there, again."])
    runs = {}
    for mode in ("code", "expected", None):
        torch.manual_seed(0)
        runs[mode] = model.generate(**inputs, do_sample=True, nar_decoding="argmax",
                                    **({} if mode is None else {"first_level_decoding": mode}))
    code, expected = runs["code"], runs["expected"]
    assert torch.equal(code.sequences, expected.sequences) and torch.equal(code.codes[0], expected.codes[0])
    assert torch.equal(runs[None].audio, code.audio) and code.first_code_probabilities is None  # the default
    first = expected.first_code_probabilities[0]  # [T, C_1]
    codes = expected.codes[0]
    assert first.shape[0] == codes.shape[-1] > 0
    torch.testing.assert_close(first.sum(-1), torch.ones(first.shape[0]))
    assert (first[torch.arange(codes.shape[-1]), codes[0]] > 0).all()
    length = int(expected.audio_lengths[0])
    assert length == int(code.audio_lengths[0])
    by_hand = model.codec.decode(codes[None], first_code_probabilities=first[None])[0, 0]
    torch.testing.assert_close(expected.audio[0, :length], by_hand)
    assert not torch.allclose(expected.audio[0, :length], code.audio[0, :length])  # a random GAR is unsure
    # Certain distributions decode exactly as the codes do.
    certain = torch.nn.functional.one_hot(codes[0], first.shape[-1]).float()[None]  # [1, T, C_1]
    torch.testing.assert_close(model.codec.decode(codes[None], first_code_probabilities=certain), model.codec.decode(codes[None]))
    greedy = [model.generate(**inputs, do_sample=False, first_level_decoding=mode) for mode in ("code", "expected")]
    assert torch.equal(greedy[0].audio, greedy[1].audio) and greedy[1].first_code_probabilities is None
    # Streaming decodes each window's first level from the same distributions as the one-shot rows
    # (its deeper levels come from NAR passes over the frames so far, so only level 1 is compared).
    calls, decode = [], model._codec_decode

    def spy(window_codes, probabilities=None, first_probabilities=None):
        calls.append((window_codes, first_probabilities))
        return decode(window_codes, probabilities, first_probabilities)

    chunks = []
    model._codec_decode = spy
    try:
        torch.manual_seed(0)
        streamed = model.generate(**inputs, do_sample=True, nar_decoding="argmax", first_level_decoding="expected",
                                  streamer=EllaVAudioStreamer(on_audio=chunks.append, chunk_frames=4))
    finally:
        del model._codec_decode
    assert torch.equal(streamed.sequences, expected.sequences) and sum(map(len, chunks)) == length
    assert len(calls) >= 2
    for window_codes, window_first in calls:
        span = window_codes.shape[-1]
        assert window_first is not None and window_first.shape == (span, first.shape[-1])
        assert any(
            torch.equal(window_codes[0], codes[0, o: o + span]) and torch.allclose(window_first, first[o: o + span])
            for o in range(codes.shape[-1] - span + 1)
        )
    with pytest.raises(ValueError, match="first_level_decoding must be one of 'code', 'expected', got 'mean'"):
        model.generate(**inputs, first_level_decoding="mean")


def test_streaming_matches_one_shot_generation(tts_model, tts_dir):
    import threading

    import numpy as np

    from ella_v_hf import EllaVAudioStreamer
    from ella_v_hf.processing import EllaVProcessor

    model, processor = tts_model, EllaVProcessor.from_pretrained(tts_dir)
    inputs = processor(["A longer sentence, so that it streams in several chunks."])
    one = model.generate(**inputs, do_sample=False)
    chunks = []
    streamer = EllaVAudioStreamer(on_audio=chunks.append, chunk_frames=4)
    streamed = model.generate(**inputs, do_sample=False, streamer=streamer)
    assert torch.equal(streamed.sequences, one.sequences) and torch.equal(streamed.codes[0], one.codes[0])
    assert len(chunks) >= 2 and streamer.chunks == len(chunks) and 0 < streamer.first_audio_seconds
    joined = np.concatenate(chunks)
    assert joined.size == int(one.audio_lengths[0]) == int(streamed.audio_lengths[0])
    assert np.array_equal(joined, streamed.audio[0].numpy())  # the returned audio is the stream
    # Iterating in another thread, as with TextIteratorStreamer.
    streamer = EllaVAudioStreamer(chunk_frames=4, timeout=300)
    thread = threading.Thread(target=model.generate, kwargs=dict(**inputs, do_sample=False, streamer=streamer))
    thread.start()
    received = list(streamer)
    thread.join()
    assert np.array_equal(np.concatenate(received), joined) and streamer.sampling_rate == model.config.sampling_rate
    with pytest.raises(ValueError, match="batch size 1"):
        model.generate(**processor(["One.", "Two."]), streamer=EllaVAudioStreamer())
    from transformers import TextStreamer

    with pytest.raises(ValueError, match="must be an EllaVAudioStreamer"):
        model.generate(**inputs, streamer=TextStreamer(processor.tokenizer))


def test_pipeline(tts_dir):
    from transformers import pipeline

    tts = pipeline("text-to-speech", model=str(tts_dir))
    result = tts("Hello there.")
    assert result["sampling_rate"] == 16000
    assert result["audio"].ndim == 1 and result["audio"].size > 0 and np.isfinite(result["audio"]).all()


def test_synthesize_cli(tts_dir, tmp_path):
    import soundfile as sf

    out = tmp_path / "out.wav"
    result = subprocess.run(
        [sys.executable, "-m", "ella_v_hf.cli", "synthesize", "One sentence. And another one!", "-o", str(out), "--model", str(tts_dir), "--json", "--plot"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    audio, rate = sf.read(out)
    assert rate == 16000 and audio.size > 0 and np.isfinite(audio).all()
    assert (tmp_path / "out.png").is_file()


def test_synthesize_cli_sampling_options_default_to_the_model():
    from ella_v_hf._decoding import decoding_arguments
    from ella_v_hf.cli import build_parser

    def options(*flags):
        return decoding_arguments(build_parser().parse_args(["synthesize", "Hi.", "-o", "x.wav", *flags]))

    for key in ("eop_quantile", "top_p", "temperature", "guidance_scale"):
        assert key not in options()  # the model's generation_config decides
    assert options("--top-p", "0.8", "--temperature", "0.7", "--guidance-scale", "2")["top_p"] == 0.8
    assert options("--temperature", "0.7")["temperature"] == 0.7 and options("--guidance-scale", "2")["guidance_scale"] == 2.0
    assert options("--eop-quantile", "0.5")["eop_quantile"] == 0.5
    assert options("--eop-quantile", "off")["eop_quantile"] is None  # the paper's decoding, whatever the model says
    from ella_v_hf.modeling.decoding_options import FIRST_LEVEL_DECODINGS

    assert "first_level_decoding" not in options()
    for mode in FIRST_LEVEL_DECODINGS:  # the CLI's choices are the generation config's
        assert options("--first-level-decoding", mode)["first_level_decoding"] == mode
    with pytest.raises(SystemExit):
        options("--first-level-decoding", "mean")
    for bad in ("1", "0", "half"):
        with pytest.raises(SystemExit):
            options("--eop-quantile", bad)

    from ella_v_hf.synthesis import DECODE_WEIGHT_CHOICES

    assert build_parser().parse_args(["synthesize", "Hi.", "-o", "x.wav"]).decode_weights == "checkpoint"
    for command in (["synthesize", "Hi.", "-o", "x.wav"], ["evaluate", "--model", "m", "--eval", "e", "--out", "o.json"]):
        for choice in DECODE_WEIGHT_CHOICES:  # the parser's choices are the library's
            assert build_parser().parse_args([*command, "--decode-weights", choice]).decode_weights == choice
        with pytest.raises(SystemExit):
            build_parser().parse_args([*command, "--decode-weights", "int8"])


def test_decode_weights_override_the_checkpoint(tts_model):
    from ella_v_hf.synthesis import set_decode_weights

    model = copy.deepcopy(tts_model)
    assert set_decode_weights(model, "checkpoint") == model.gar.config.decode_weight_dtype
    assert set_decode_weights(model, "float16") == "float16" and set_decode_weights(model, "checkpoint") == "float16"
    assert set_decode_weights(model, "float32") is None and model.gar.config.decode_weight_dtype is None
    with pytest.raises(ValueError, match="decode weights"):
        set_decode_weights(model, "int8")


def test_tts_generate_runs_in_inference_mode_and_leaves_the_gar_usable_outside_it(tts_model, tts_dir):
    """The TTS's generate() runs under torch.inference_mode; the half decoding copies it makes must
    not break a later GAR generate() or training step outside that mode."""
    from ella_v_hf.processing import EllaVProcessor

    model = copy.deepcopy(tts_model)
    model.gar.config.decode_weight_dtype = "float16"
    out = model.generate(**EllaVProcessor.from_pretrained(tts_dir)(["Hello there."]), do_sample=False)
    assert out.audio.is_inference() and out.audio.clone().requires_grad_().sum().item() == pytest.approx(float(out.audio.sum()))
    gar, space = model.gar, model.config.gar_config.token_space
    ids = out.sequences[:, :12].clone()
    again = gar.generate(ids, max_new_tokens=3, do_sample=False, eos_token_id=space.EOS, pad_token_id=space.PAD)
    assert not again.is_inference()
    gar.train()
    loss = gar(input_ids=again, labels=again).loss  # a training step on generated ids, outside the mode
    loss.backward()
    assert gar.lm_head.weight.grad is not None


def test_synthesize_cli_streams(tts_dir, tmp_path):
    import json

    import soundfile as sf

    out = tmp_path / "stream.wav"
    result = subprocess.run(
        [sys.executable, "-m", "ella_v_hf.cli", "synthesize", "One sentence. And another one!", "-o", str(out), "--model", str(tts_dir),
         "--stream", "--json", "--threads", "1", "--greedy"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    audio, rate = sf.read(out)
    assert rate == 16000 and abs(audio.size / rate - report["seconds"]) < 1e-2 and 0 < report["time_to_first_audio_seconds"]
    bad = subprocess.run([sys.executable, "-m", "ella_v_hf.cli", "synthesize", "Hi.", "-o", str(out), "--model", str(tts_dir), "--threads", "0"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "--threads must be >= 1" in bad.stderr


def test_long_text_is_split():
    from ella_v_hf.processing import EllaVPhonemeTokenizer
    from ella_v_hf.synthesis import split_sentences

    tok = EllaVPhonemeTokenizer()
    assert split_sentences("One. Two! Three?") == ["One.", "Two!", "Three?"]
    long = ", ".join(["a very long clause of words"] * 30) + "."
    parts = split_sentences(long, tok, max_phonemes=60)
    assert len(parts) > 1 and all(len(tok.text_to_phonemes(p)) <= 60 for p in parts)


def test_tts_remote_code_in_fresh_process(tts_dir, tmp_path):
    import json
    import os
    import textwrap

    from ella_v_hf import EllaVForTextToSpeech
    from ella_v_hf.processing import EllaVProcessor

    script = textwrap.dedent(
        """
        import json, sys
        sys.modules["ella_v_hf"] = None
        import torch
        from transformers import AutoModelForTextToWaveform, AutoProcessor
        model = AutoModelForTextToWaveform.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
        processor = AutoProcessor.from_pretrained(sys.argv[1], trust_remote_code=True)
        out = model.generate(**processor(["Hello there."]), do_sample=False)
        print(json.dumps({"module": type(model).__module__, "sequences": out.sequences.tolist(), "length": int(out.audio_lengths[0])}))
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1")
    result = subprocess.run([sys.executable, "-c", script, str(tts_dir)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    remote = json.loads(result.stdout.strip().splitlines()[-1])
    assert remote["module"].startswith("transformers_modules.")
    model = EllaVForTextToSpeech.from_pretrained(tts_dir).eval()
    local = model.generate(**EllaVProcessor.from_pretrained(tts_dir)(["Hello there."]), do_sample=False)
    assert remote["sequences"] == local.sequences.tolist() and remote["length"] == int(local.audio_lengths[0])


def untrained_tts(codec_config, **gar_overrides):
    """A seeded, untrained tiny ``EllaVForTextToSpeech`` (GAR and NAR 2 × 32) on ``codec_config``, and its processor."""
    from ella_v_hf import EllaVForTextToSpeech, EllaVTTSConfig
    from ella_v_hf.processing import EllaVPhonemeTokenizer, EllaVProcessor

    tok = EllaVPhonemeTokenizer()
    dims = dict(num_phonemes=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
    config = EllaVTTSConfig(gar_config={**dims, **gar_overrides}, nar_config=dims, codec_config=codec_config)
    torch.manual_seed(0)
    return EllaVForTextToSpeech(config).eval(), EllaVProcessor(tok)


@pytest.mark.parametrize(
    "gar_overrides", [dict(layout="vall-e"), dict(global_advance=False), dict(inline_phonemes=False), dict(local_advance=0)]
)
def test_tts_generate_for_every_layout(gar_overrides):
    from ella_v_hf.modeling import EllaVMelCodecConfig

    model, processor = untrained_tts(EllaVMelCodecConfig(num_codebooks=2, codebook_size=16, griffin_lim_iters=2), **gar_overrides)
    config = model.config
    inputs = processor(["Hi there.", "A longer sentence here."])
    out = model.generate(**inputs)
    space, spec = config.gar_config.token_space, config.gar_config.layout_spec
    for i in range(2):
        parsed = parse_gar_sequence(out.sequences[i].tolist(), space, spec, strict=spec.interleaved)
        assert out.codes[i].shape == (2, len(parsed.codes))
        if spec.interleaved:
            target = inputs["input_ids"][i, : int(inputs["attention_mask"][i].sum())].tolist()
            assert parsed.complete and parsed.phonemes == target and not out.infinite[i]
        else:  # VALL-E: either EOS was sampled, or the row hit the cap and counts as infinite
            assert parsed.complete != bool(out.infinite[i])


def test_long_text_runs_in_several_batches_and_joins(tts_dir, monkeypatch):
    import ella_v_hf.synthesis as synthesis
    from ella_v_hf import EllaVForTextToSpeech
    from ella_v_hf.processing import EllaVProcessor

    monkeypatch.setattr(synthesis, "SENTENCES_PER_BATCH", 2)
    model = EllaVForTextToSpeech.from_pretrained(tts_dir).eval()
    processor = EllaVProcessor.from_pretrained(tts_dir)
    calls = []
    original = model.generate
    monkeypatch.setattr(model, "generate", lambda **kw: calls.append(kw["input_ids"].shape[0]) or original(**kw))
    result = synthesis.synthesize(model, processor, "One. Two. Three. Four. Five.", seed=0)
    assert calls == [2, 2, 1] and len(result.sentences) == 5
    pause = int(model.config.sentence_pause_seconds * 16000)
    assert result.audio.size >= 4 * pause and np.isfinite(result.audio).all()


def test_broken_checkpoint_directories_are_reported(tts_dir, tmp_path):
    import shutil

    from ella_v_hf.synthesis import resolve_model_dir

    with pytest.raises(FileNotFoundError, match="missing"):
        resolve_model_dir(tmp_path)
    broken = tmp_path / "broken"
    shutil.copytree(tts_dir, broken)
    data = (broken / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(data[: len(data) // 3])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        resolve_model_dir(broken)


def test_frame_phoneme_nar_gets_the_generated_alignment(monkeypatch):
    """An ELLA-V checkpoint whose NAR has frame_phonemes reads each frame's phoneme from the GAR
    sequence it just generated (local advance undone), prompt frames included."""
    from ella_v_hf import EllaVForTextToSpeech, EllaVTTSConfig
    from ella_v_hf.modeling import EllaVMelCodecConfig, EllaVNARModel, sequence_to_alignment_durations
    from ella_v_hf.processing import EllaVPhonemeTokenizer, EllaVProcessor

    tok = EllaVPhonemeTokenizer()
    dims = dict(num_phonemes=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
    codec = EllaVMelCodecConfig(num_codebooks=3, codebook_size=16, griffin_lim_iters=2)
    with pytest.raises(ValueError, match="only the interleaved ELLA-V layout"):
        EllaVTTSConfig(gar_config={**dims, "layout": "vall-e"}, nar_config={**dims, "frame_phonemes": True}, codec_config=codec)
    config = EllaVTTSConfig(gar_config={**dims, "local_advance": 1, "max_frames_per_phone": 4},
                            nar_config={**dims, "frame_phonemes": True}, codec_config=codec)
    torch.manual_seed(0)
    model = EllaVForTextToSpeech(config).eval()
    seen = []
    original = EllaVNARModel.decode_codebooks

    def spy(self, phoneme_ids, first_codes, *args, **kwargs):
        seen.append((first_codes.shape[-1], kwargs.get("prompt_codes"), kwargs["frame_phoneme_ids"]))
        return original(self, phoneme_ids, first_codes, *args, **kwargs)

    monkeypatch.setattr(EllaVNARModel, "decode_codebooks", spy)
    space, spec = config.gar_config.token_space, config.gar_config.layout_spec
    inputs = EllaVProcessor(tok)(["Hi there.", "A longer sentence here."])
    out = model.generate(**inputs, do_sample=True)
    for i, (frames, prompt, aligned) in enumerate(seen):
        parsed = parse_gar_sequence(out.sequences[i].tolist(), space, spec)
        durations = sequence_to_alignment_durations(parsed.frame_counts, spec.local_advance)
        expected = [space.phoneme_id(p) for p, d in zip(parsed.phonemes, durations) for _ in range(d)]
        assert prompt is None and aligned[0].tolist() == expected and len(expected) == frames == out.codes[i].shape[-1]
    # With an acoustic prompt the alignment covers the prompt frames first.
    seen.clear()
    prompt_ids, prompt_durations = [5, 6, 7], [2, 3, 2]
    prompt_codes = torch.randint(0, 16, (1, 3, 7))
    out = model.generate(inputs["input_ids"][:1], inputs["attention_mask"][:1], prompt_input_ids=torch.tensor([prompt_ids]),
                         prompt_durations=torch.tensor([prompt_durations]), prompt_codes=prompt_codes, do_sample=True)
    frames, prompt, aligned = seen[0]
    assert aligned.shape[-1] == 7 + frames and aligned[0, :4].tolist() == [space.phoneme_id(p) for p in (5, 5, 6, 6)]


@pytest.mark.parametrize("layout", ["ella-v", "vall-e"])
def test_only_codes_the_codecs_first_level_decodes_are_sampled(layout):
    """A learned codec whose first level uses 4 of its 16 codes: a GAR over all 16 (untrained, hot
    sampling) must never emit codes 4..15, which that level cannot decode."""
    from ella_v_hf.modeling import EllaVCodecConfig

    codec = EllaVCodecConfig(hidden_size=16, codebook_dim=8, num_codebooks=2, codebook_size=16, first_codebook_size=4,
                             dilations=[1, 2], griffin_lim_iters=2)
    model, processor = untrained_tts(codec, layout=layout)
    config = model.config
    assert config.gar_config.token_space.codebook_size == 16
    inputs = processor(["A sentence of a few words.", "Another one."])
    outputs = [model.generate(**inputs, do_sample=True, temperature=3.0, top_k=0, top_p=1.0) for _ in range(4)]
    first = torch.cat([codes[0] for out in outputs for codes in out.codes])  # every generated first-codebook code
    assert first.numel() > 8 and int(first.max()) < 4  # without the limit, 12 of 16 codes (+ EOS) are as likely
    with pytest.raises(ValueError, match="acoustic_codes"):
        EllaVPhonemeAdvanceLogitsProcessor(config.gar_config.token_space, config.gar_config.layout_spec, 3, acoustic_codes=17)


def test_generate_is_its_stages_called_in_turn(tts_model, tts_dir):
    """prompt -> GAR -> NAR + codec: each stage a method a caller can run alone."""
    from ella_v_hf.modeling.generation_ella_v import merge_generation_config
    from ella_v_hf.processing import EllaVProcessor

    inputs = EllaVProcessor.from_pretrained(tts_dir)(["Hello there.", "A second, longer text."])
    whole = tts_model.generate(**inputs, do_sample=False)
    config, _ = merge_generation_config(tts_model.generation_config, None, {"do_sample": False})
    with torch.inference_mode():
        prompts, phonemes, prompt_codes = tts_model.prepare_prompts(inputs["input_ids"], inputs["attention_mask"])
        first = tts_model.generate_first_codebook(prompts, phonemes, prompt_codes, config)
        staged = tts_model.decode_speech(first, phonemes, prompt_codes, config)
    assert torch.equal(staged.sequences, whole.sequences) and torch.equal(staged.audio, whole.audio)
    assert torch.equal(staged.cuts, whole.cuts) and first.sequences.shape[1] > first.prompt_length
