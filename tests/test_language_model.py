"""Causal language models as subjects (issue 27): the prompt taken from the script's own generate() / forward calls,
prefill and decode timed apart, and the decode-step findings of QD013 and QD008 (unit tests on hand-built facts)."""

from __future__ import annotations

import importlib.util

import pytest
from conftest import as_json, run_check
from factsbuild import make_facts, mod, profile, run_rule, timing

from qdoctor import facts as F
from qdoctor.facts import Benchmarks, ModuleInfo, Ratio
from qdoctor.facts.language_model import LanguageModel, PhaseTiming


def _language_model(decode: Ratio, prefill: Ratio | None = None) -> LanguageModel:
    return LanguageModel(
        architecture="LlamaForCausalLM",
        batch=1,
        prompt_tokens=32,
        new_tokens=8,
        source="the prompt of the script's generate() call to the subject at line 26",
        cache_argument="cache",
        prefill=PhaseTiming(timing(20.0), timing(24.0), prefill) if prefill is not None else None,
        decode=PhaseTiming(timing(12.0), timing(6.0), decode),
    )


def _torchao_linear(path: str, activation_quantized: bool = True) -> ModuleInfo:
    return mod(
        path,
        "Linear",
        F.TORCHAO_QUANTIZED,
        weight_tensor_type="torchao.quantization.Int8Tensor",
        weight_storage_dtype="torch.int8",
        activation_quantized=activation_quantized,
    )


SLOWER_DECODE = Ratio(0.5, 0.45, 0.56, "paired-bootstrap")
FASTER_PREFILL = Ratio(1.2, 1.1, 1.3, "paired-bootstrap")


def test_qd013_reports_a_torchao_decode_step_slower_than_fp32_while_the_prompt_is_faster():
    facts = make_facts(
        [_torchao_linear("model.layers.0.mlp.up_proj"), _torchao_linear("lm_head")],
        profile=profile(1.0),
        language_model=_language_model(SLOWER_DECODE, FASTER_PREFILL),
    )
    found = [f for f in run_rule("QD013", facts) if f.evidence.get("cause") == "decode-step"]
    assert len(found) == 1
    finding = found[0]
    assert finding.location.module == "lm_head"
    assert finding.evidence["prefill_verdict"] == "faster"
    assert "decode step" in finding.message and "while its prompt (prefill) is faster" in finding.message
    assert "torch.compile" in finding.fix


@pytest.mark.parametrize(
    "decode",
    [
        Ratio(0.97, 0.9, 1.04, "paired-bootstrap"),  # within noise
        Ratio(0.8, 0.6, 1.1, "paired-bootstrap", contended=True),  # a busy machine widened it across 1.0: no verdict
        Ratio(1.5, 1.4, 1.6, "paired-bootstrap"),  # int8 pays on decode
    ],
)
def test_no_decode_finding_without_a_clear_decode_slowdown(decode):
    facts = make_facts(
        [_torchao_linear("lm_head")], profile=profile(1.0), language_model=_language_model(decode, FASTER_PREFILL)
    )
    assert not [f for f in run_rule("QD013", facts) if f.evidence.get("cause") == "decode-step"]


def test_qd008_reports_a_dynamic_int8_decode_step_slower_than_fp32():
    facts = make_facts(
        [mod("lm_head", "DynamicQuantizedLinear", F.DYNAMIC_QUANTIZED)],
        profile=profile(1.0),
        language_model=_language_model(SLOWER_DECODE),
    )
    found = [f for f in run_rule("QD008", facts) if f.evidence.get("cause") == "decode-step"]
    assert len(found) == 1 and found[0].location.module == "lm_head"
    assert found[0].evidence["prefill_verdict"] == "not timed"
    assert not [f for f in run_rule("QD013", facts) if f.evidence.get("cause") == "decode-step"]


def test_the_report_note_gives_both_phases():
    from qdoctor.report.language_model import language_model_note

    facts = make_facts([_torchao_linear("lm_head")], language_model=_language_model(SLOWER_DECODE, FASTER_PREFILL))
    note = language_model_note(facts)
    assert note is not None and note.startswith("language model: LlamaForCausalLM, prompt of 1x32 tokens")
    assert "prompt (prefill) 20.00 ms in int8 vs 24.00 ms in fp32, int8 at 1.20x (1.10-1.30)" in note
    assert "one decode step 12.00 ms in int8 vs 6.00 ms in fp32" in note
    assert language_model_note(make_facts([])) is None


# ------------------------------------------------------------------------------------------------ end to end

needs_llm = pytest.mark.skipif(
    importlib.util.find_spec("transformers") is None or importlib.util.find_spec("torchao") is None,
    reason="the language-model fixtures need transformers and torchao (the [llm] and [torchao] extras)",
)


@needs_llm
def test_the_prompt_of_a_generate_call_is_the_input_and_both_phases_are_timed():
    report = run_check("fixtures/llm/llama_int8_dynamic_generate.py", bench=True, profile=False)
    facts = report.facts
    assert facts.crash is None and facts.target.load_crash is None
    # input_ids (and attention_mask when generate() passed it on as the 2-D mask the script gave)
    assert facts.target.inputs[0].shape == [1, 32] and facts.target.inputs[0].dtype == "torch.int64"
    assert any("generate() call to the subject at line 26" in note for note in facts.target.selection)
    model = facts.language_model
    assert model is not None and model.architecture == "LlamaForCausalLM"
    assert (model.batch, model.prompt_tokens, model.new_tokens, model.cache_argument) == (1, 32, 8, "cache")
    assert model.decode_error is None
    for phase in (model.prefill, model.decode):
        assert phase is not None and phase.error is None
        assert phase.subject is not None and phase.float_baseline is not None and phase.speedup is not None
    assert any(note.startswith("language model: LlamaForCausalLM") for note in report.notes)
    document = as_json(report)
    assert document["language_model"]["decode"]["subject"]["runs"] >= 1
    resources = document["resources"]
    assert resources["peak_rss_bytes"] >= resources["start_rss_bytes"] > 0
    assert resources["float_model_bytes"] > resources["subject_model_bytes"] > 0
    assert {"load", "trace", "language_model"} <= set(resources["phase_peak_rss_bytes"])


@needs_llm
def test_a_forward_call_with_keyword_arguments_gives_the_prompt():
    report = run_check("fixtures/llm/qwen_int8_weight_only_forward.py")
    facts = report.facts
    assert facts.crash is None
    assert [t.shape for t in facts.target.inputs] == [[2, 24], [2, 24]]
    model = facts.language_model
    assert model is not None and model.architecture == "Qwen2ForCausalLM"
    assert (model.batch, model.prompt_tokens, model.new_tokens) == (2, 24, None)
    assert model.prefill is None and model.decode is None  # bench=False: nothing timed
    assert facts.is_quantized


@needs_llm
def test_int4_weight_only_with_the_cpu_packing_is_checked():
    report = run_check("fixtures/llm/llama_int4_weight_only_generate.py")
    facts = report.facts
    assert facts.crash is None and facts.target.load_crash is None
    assert facts.is_quantized
    kinds = {m.kind for m in facts.modules or [] if m.path.endswith("up_proj")}
    assert kinds == {F.TORCHAO_QUANTIZED}
    assert facts.language_model is not None and facts.language_model.new_tokens is not None
    assert facts.numerics is not None and facts.numerics.sqnr_db is not None


def test_a_decode_step_finding_does_not_explain_a_slower_prompt():
    from qdoctor.run.check import CheckOptions, build_report

    slower = Ratio(0.5, 0.45, 0.55, "paired-bootstrap")
    facts = make_facts(
        [_torchao_linear("lm_head")],
        profile=profile(1.0),
        language_model=_language_model(SLOWER_DECODE, slower),
        benchmark=Benchmarks(subject=timing(20.0), float_baseline=timing(10.0), paired_speedup=slower),
    )
    found = build_report(facts, CheckOptions(verify=False)).findings
    assert {f.evidence.get("cause") for f in found if f.rule == "QD013"} == {"decode-step"}
    assert "QD024" in {f.rule for f in found}  # nothing explains the slower prompt the header shows
