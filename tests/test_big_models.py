"""Issue 27: memory and time on big models. The resource sampler, model sizes without copies, the copy-only-when-
needed rule, counted progress and the per-call-time budget (no model bigger than a few layers runs here)."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn

from qdoctor.gather import budget, progress, resources, rounds
from qdoctor.gather.size import serialized_bytes
from qdoctor.introspect.copies import changes_when_run, runnable


def test_the_monitor_attributes_a_peak_to_the_phase_it_happened_in(monkeypatch):
    # the resident set as the monitor reads it, scripted: in a long test process the allocator may hand back memory
    # an earlier test freed, so a real allocation need not grow the resident set
    rss = {"now": 1_000_000_000}
    monkeypatch.setattr(resources, "current_rss_bytes", lambda: rss["now"])
    with resources.monitoring() as monitor:
        with resources.phase("small"):
            rss["now"] += 1_000_000
        rss["now"] = 1_000_000_000
        with resources.phase("big"):
            rss["now"] += 64 * 1024 * 1024
            monitor.sample()
            rss["now"] = 1_000_000_000
        found = monitor.resources(float_model_bytes=1000, subject_model_bytes=250)
    assert found.phase_peak_rss_bytes["big"] == 1_000_000_000 + 64 * 1024 * 1024
    assert found.phase_peak_rss_bytes["small"] == 1_001_000_000
    assert found.peak_rss_bytes >= found.phase_peak_rss_bytes["big"]
    assert found.added_per_model is not None and found.added_per_model > 0


def test_the_monitor_reads_the_real_resident_set():
    assert resources.current_rss_bytes() > 10 * 1024 * 1024  # a Python process with torch imported


def test_phase_without_a_monitor_does_nothing():
    assert resources.active() is None
    with resources.phase("anything"):
        pass


def test_monitors_nest_into_the_outer_one():
    with resources.monitoring() as outer, resources.monitoring() as inner:
        assert inner is outer


def test_model_bytes_counts_a_tied_weight_once():
    embedding = nn.Embedding(100, 16)
    head = nn.Linear(16, 100, bias=False)
    head.weight = embedding.weight  # tied, as language models tie their input and output embeddings
    model = nn.ModuleDict({"embedding": embedding, "head": head})
    assert resources.model_bytes(model) == 100 * 16 * 4
    assert resources.model_bytes("not a module") is None


def test_model_bytes_of_a_torchao_int8_model_is_its_int8_size():
    pytest.importorskip("torchao")
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    model = nn.Sequential(nn.Linear(256, 256, bias=False))
    float_bytes = resources.model_bytes(model)
    quantize_(model, Int8DynamicActivationInt8WeightConfig())
    int8_bytes = resources.model_bytes(model)
    assert float_bytes == 256 * 256 * 4
    assert int8_bytes is not None and 256 * 256 <= int8_bytes < float_bytes / 2


def test_serialized_bytes_counts_what_torch_save_writes_without_keeping_it():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Linear(8, 4))
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    assert serialized_bytes(model) == buffer.tell()


def test_a_model_is_copied_only_when_running_it_would_change_it():
    evaluated = nn.Sequential(nn.Linear(4, 4), nn.ReLU()).eval()
    assert not changes_when_run(evaluated)
    assert runnable(evaluated) is evaluated
    training = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))  # train mode: BatchNorm updates its statistics
    assert changes_when_run(training)
    copied = runnable(training)
    assert copied is not training and copied.training
    stateless = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))  # train mode, but forward changes nothing it holds
    assert not changes_when_run(stateless)
    assert runnable(stateless) is stateless
    observed = copy.deepcopy(evaluated)
    observed.qconfig = torch.ao.quantization.default_qconfig
    torch.ao.quantization.prepare(observed, inplace=True)
    assert changes_when_run(observed)


def test_counted_runs_reach_the_check_progress_with_the_stage_announced_last():
    heard: list[str] = []
    with progress.reporting(heard.append) as announce:
        announce("benchmarking the subject")
        counter = progress.Counter(total=3)
        run = progress.counted(lambda: None, counter)
        for _ in range(3):
            run()
    assert heard[0] == "benchmarking the subject"
    assert heard[-1] == "benchmarking the subject (3/3 runs)"
    assert progress.stage_of(heard[-1]) == "benchmarking the subject"
    progress.Counter(total=1).tick()  # no check running: nothing reported, nothing raised


def test_slow_models_get_fewer_rounds_and_fast_ones_the_defaults():
    assert budget.rounds_for(None, 2) == (rounds.MIN_ROUNDS, rounds.MAX_ROUNDS)
    assert budget.rounds_for(0.01, 2) == (rounds.MIN_ROUNDS, rounds.MAX_ROUNDS)
    least, most = budget.rounds_for(2.0, 2)
    assert least == budget.SLOW_MIN_ROUNDS and least <= most <= 2 * rounds.MIN_ROUNDS
    assert budget.rounds_for(30.0, 2) == (budget.SLOW_MIN_ROUNDS, budget.SLOW_MIN_ROUNDS)


def test_progress_on_a_stderr_that_is_not_a_terminal_is_a_line_per_long_stage(monkeypatch):
    from rich.console import Console

    from qdoctor.run import progress_display

    clock = [0.0]
    monkeypatch.setattr("time.monotonic", lambda: clock[0])
    written = io.StringIO()
    show = progress_display.progress_shown(Console(file=written, force_terminal=False, width=200), lambda text: None)

    def at(seconds: float, stage: str) -> None:
        clock[0] = seconds
        show(0, 1, [("m.py", stage)])

    at(0.0, "starting")
    at(9.0, "starting")  # start-up (importing torch on a busy machine): never a line, a bad input stays one line
    at(9.0, "loading m.py")
    at(9.5, "tracing one forward pass")  # the load took half a second: no line for it
    at(11.6, "tracing one forward pass")  # tracing has run 2.1 s: one line
    at(12.0, "benchmarking the subject (3 runs)")
    at(14.5, "benchmarking the subject (4 runs)")  # the same stage, 2.5 s in: one line
    at(17.0, "benchmarking the subject (5 runs)")  # 2.5 s after its line: none
    at(24.6, "benchmarking the subject (9 runs)")  # 10 s after its line: another
    show(1, 1, [])  # finished
    assert written.getvalue().splitlines() == [
        "qdoctor progress: m.py: tracing one forward pass",
        "qdoctor progress: m.py: benchmarking the subject (4 runs)",
        "qdoctor progress: m.py: benchmarking the subject (9 runs)",
    ]
