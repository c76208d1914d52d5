"""WER and CER as a local `evaluate` metric (the Hub's "wer" cannot load offline).

    import evaluate
    metric = evaluate.load(path_to_this_file)
    metric.compute(predictions=["a b"], references=["a c"])  # {"wer": 0.5, "cer": ...}

Texts are compared as given; normalise both sides first (``ella_v_hf.evaluation.asr.normalize_transcript``).
"""

import datasets
import evaluate
import jiwer

_DESCRIPTION = "Word and character error rates (jiwer), corpus-level: total edits over total reference length."


class WerCer(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description="predictions: list of hypothesis strings; references: list of reference strings",
            features=datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
        )

    def _compute(self, predictions, references):
        predictions, references = list(predictions), list(references)  # datasets 4 hands over Column objects
        if any(not r.strip() for r in references):
            raise ValueError("Every reference must be non-empty to compute WER/CER.")
        return {"wer": float(jiwer.wer(references, predictions)), "cer": float(jiwer.cer(references, predictions))}
