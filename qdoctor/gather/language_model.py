"""A causal LM's two phases timed apart: the prompt (prefill) and one decode step, subject beside float baseline.

The decode step is one token per sequence on top of the prompt's key/value cache, as generate() runs it. Each model
gets its own cache from one prefill; after every timed step the cache is cropped back to the prompt (the step
appended one position), so every step is the same step: the first new token. Nothing of the script's own cache is
used (generate() left it at its final length).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from qdoctor.facts.language_model import LanguageModel, PhaseTiming
from qdoctor.facts.location import exception_line
from qdoctor.gather import budget, progress, timing
from qdoctor.introspect.copies import runnable
from qdoctor.load.language_model import LanguageModelCall


def _quietly(run: Callable[[], Any]) -> Callable[[], Any]:
    def call() -> Any:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # transformers' deprecation notes, once per call
            return run()

    return call


def _cache_of(output: Any) -> Any:
    for name in ("cache", "past_key_values"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = getattr(output, name, None)
        if found is not None:
            return found
    return None


def prefill_run(model: nn.Module, call: LanguageModelCall) -> Callable[[], Any]:
    arguments = call.prefill_arguments()
    return _quietly(lambda: model(*arguments, use_cache=True))


def decode_run(model: nn.Module, call: LanguageModelCall) -> Callable[[], Any]:
    """One decode step of ``model`` after the prompt, repeatable: its cache is cropped back after each step.
    Raises ValueError when the model's cache cannot be cropped (a static or sliding cache...)."""
    output = prefill_run(model, call)()
    cache = _cache_of(output)
    if cache is None or not callable(getattr(cache, "crop", None)) or not hasattr(cache, "get_seq_length"):
        raise ValueError(f"its forward returned no croppable key/value cache ({type(cache).__name__})")
    prompt = int(call.input_ids.shape[1])
    token = output.logits[:, -1:].argmax(dim=-1)
    mask = call.attention_mask
    step_mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1) if mask is not None else None
    keywords: dict[str, Any] = {call.cache_argument: cache, "use_cache": True}
    if step_mask is not None:
        keywords["attention_mask"] = step_mask

    def step() -> Any:
        result = model(token, **keywords)
        extra = int(cache.get_seq_length()) - prompt
        if extra > 0:
            cache.crop(-extra)  # a negative length drops that many positions (transformers 4 and 5 alike)
        return result

    return _quietly(step)


def _phase(variants: list[timing.Variant], bench_time: float, per_call_s: float | None) -> PhaseTiming:
    counter = progress.Counter()
    counted = [timing.Variant(v.key, progress.counted(v.run, counter)) for v in variants]
    least, most = budget.rounds_for(per_call_s, len(counted))
    result = timing.time_models(counted, bench_time, min_rounds=least, max_rounds=most)
    errors = "; ".join(f"{key}: {exception_line(error)}" for key, error in result.errors.items())
    return PhaseTiming(
        subject=result.timing("subject"),
        float_baseline=result.timing("float"),
        speedup=result.ratio("float", "subject"),
        error=errors or None,
    )


def language_model_facts(
    subject: nn.Module,
    baseline: nn.Module | None,
    call: LanguageModelCall,
    bench_time: float,
    announce: Callable[[str], None],
    bench: bool = True,
    per_call_s: float | None = None,
) -> LanguageModel:
    """The LM's shape and, when ``bench``, its prefill and decode step timed (subject and float baseline together;
    ``per_call_s``: the slowest model's time per forward as measured before, for the budget)."""
    config = getattr(subject, "config", None)
    facts = LanguageModel(
        architecture=type(subject).__name__,
        batch=int(call.input_ids.shape[0]),
        prompt_tokens=int(call.input_ids.shape[1]),
        new_tokens=call.new_tokens,
        source=call.source,
        cache_argument=call.cache_argument,
        hidden_size=getattr(config, "hidden_size", None),
        layers=getattr(config, "num_hidden_layers", None),
    )
    if not bench:
        return facts
    # the models run as they are unless running them changes them (qdoctor.introspect.copies): one copy at most
    models = [("subject", runnable(subject))] + ([("float", runnable(baseline))] if baseline is not None else [])
    announce("timing the prompt (prefill) of the subject and the float baseline")
    prefills = [timing.Variant(key, prefill_run(model, call)) for key, model in models]
    facts.prefill = _phase(prefills, bench_time, per_call_s)
    announce("timing one decode step (one token on the prompt's cache) of the subject and the float baseline")
    try:
        steps = [timing.Variant(key, decode_run(model, call)) for key, model in models]
    except Exception as exc:
        facts.decode_error = exception_line(exc)
        return facts
    slowest_prefill = max(
        (t.median_ms / 1000 for t in (facts.prefill.subject, facts.prefill.float_baseline) if t), default=None
    )
    facts.decode = _phase(steps, bench_time, slowest_prefill)
    return facts
