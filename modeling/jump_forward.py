"""Jump-forward decoding of the tokens the ELLA-V rule forces, through stock assisted decoding.

Every phoneme token after an EOP (and the EOS after the last EOP, and the EOP at the frame cap) is
forced by :class:`~.generation_ella_v.EllaVPhonemeAdvanceLogitsProcessor`: the model's scores for
it are never used. Decoding it as a step of its own costs a full forward and a turn of
``generate()``'s loop, about one token in seven on the demo. With ``jump_forward=True``,
:meth:`~.modeling_ella_v.EllaVForCausalLM.generate` runs transformers' own assisted-decoding loop
(``_assisted_decoding``) with :class:`ForcedTokenCandidates` as its candidate generator: when the
next token is forced, it is proposed as a candidate, and one forward over the last drawn token and
the forced one verifies it (the rule forces it again, so it is always accepted) and draws the token
after it. The sequence structure and each drawn token's distribution are unchanged; sampled
sequences differ from plain decoding's for the same seed (the draws consume the random stream
differently); greedy decoding gives the same tokens up to floating-point rounding.

Stock assisted decoding works on one sequence at a time (``batch_size = 1``); guidance's text-free
rows stay inside the forward (``text_free_rows`` with ``text_free_guidance``).

jump-forward relies on transformers' private assisted-decoding hooks, so it is opt-in and checked
(:func:`~.transformers_compat.jump_forward_unsupported`). This module imports only ``torch``,
``transformers`` and its siblings (it travels as remote code).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from .transformers_compat import jump_forward_unsupported

if jump_forward_unsupported() is None:
    from transformers.generation.candidate_generator import CandidateGenerator
else:  # transformers' candidate-generator contract is not the verified one: jump-forward stays off
    CandidateGenerator = object


#: The most tokens the phoneme-advance rule forces in a row (EOP at the frame cap, then the next phoneme).
FORCED_RUN = 2


class ForcedTokenCandidates(CandidateGenerator):
    """Proposes the tokens the phoneme-advance rule will force next, and nothing else.

    Args:
        rule: The generation's :class:`~.generation_ella_v.EllaVPhonemeAdvanceLogitsProcessor` (its
            ``forced_continuation(input_ids)`` gives the forced tokens from its state).

    Attributes:
        proposed: Tokens proposed so far (each saves a decoding step).
    """

    def __init__(self, rule: Any) -> None:
        self.rule = rule
        self.proposed = 0

    @property
    def num_drafting_tokens(self) -> int:
        """The most tokens proposed at once (the rule forces at most two in a row: EOP, then a
        phoneme); transformers 5.25+ sizes the recurrent-state record of its caches by it."""
        return FORCED_RUN

    def get_candidates(self, input_ids: torch.LongTensor, **kwargs: Any) -> tuple[torch.LongTensor, None]:
        """``input_ids`` ``[1, L]`` -> ``[1, L + n]`` with the ``n`` forced tokens appended (``n`` may be 0)."""
        tokens = self.rule.forced_continuation(input_ids, max_tokens=FORCED_RUN)
        if not tokens:
            return input_ids, None
        self.proposed += len(tokens)
        return torch.cat([input_ids, input_ids.new_tensor([tokens])], dim=1), None

    def update_candidate_strategy(self, input_ids: torch.LongTensor, scores: torch.Tensor, num_matches: int) -> None:
        """Nothing to adapt: the candidates are exact."""


def find_rule(logits_processor: Any) -> Any:
    """The processor in ``logits_processor`` that can name its forced tokens (``forced_continuation``).

    Raises:
        ValueError: There is none.
    """
    for processor in logits_processor or []:
        if callable(getattr(processor, "forced_continuation", None)):
            return processor
    raise ValueError(
        "jump_forward=True needs the phoneme-advance rule among logits_processor "
        "(EllaVPhonemeAdvanceLogitsProcessor): it names the tokens to jump over."
    )


@contextmanager
def forced_token_candidates(model: Any, kwargs: dict[str, Any]) -> Iterator[ForcedTokenCandidates]:
    """Set up one ``generate()`` call (its ``kwargs``, edited in place) for jump-forward decoding.

    ``generate()`` picks its assisted-decoding mode from ``prompt_lookup_num_tokens``; the model's
    ``_get_candidate_generator`` then returns the :class:`ForcedTokenCandidates` this block puts on
    ``model._forced_token_candidates`` instead of a prompt-lookup generator.

    Raises:
        ValueError: The call has no phoneme-advance rule, or already asks for another assistant.
    """
    config = kwargs.get("generation_config")
    for name in ("assistant_model", "prompt_lookup_num_tokens", "assistant_early_exit", "use_mtp"):
        if kwargs.get(name) not in (None, False) or getattr(config, name, None) not in (None, False):
            raise ValueError(f"jump_forward=True brings its own candidates; it cannot be combined with {name}.")
    candidates = ForcedTokenCandidates(find_rule(kwargs.get("logits_processor")))
    # generate() selects its assisted-decoding mode from this field (set on the call's own config copy).
    if config is not None:
        kwargs["generation_config"] = config = copy.deepcopy(config)
        config.prompt_lookup_num_tokens = 1
    else:
        kwargs["prompt_lookup_num_tokens"] = 1
    model._forced_token_candidates = candidates
    try:
        yield candidates
    finally:
        model._forced_token_candidates = None
