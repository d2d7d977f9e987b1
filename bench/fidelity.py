"""Timing fidelity: does qdoctor report the latency an independent measurement sees?

For the same model in the same process: qdoctor's reported median vs an independent torch.utils.benchmark
blocked_autorange measurement (target: within 10 %), and two consecutive qdoctor checks (target: within 10 %).
"""

from __future__ import annotations

import logging

from common import ROOT, machine, ms, table, write_section

TARGETS = ["fixtures/healthy_static.py", "fixtures/prepared_not_converted.py"]


def independent_ms(model, inputs, engine: str) -> tuple[float, float]:
    import torch

    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    import torch.utils.benchmark as benchmark

    from qdoctor.introspect.state import quantized_engine

    with quantized_engine(engine), torch.no_grad():
        timer = benchmark.Timer(
            "model(*inputs)", globals={"model": model, "inputs": inputs}, num_threads=torch.get_num_threads()
        )
        m = timer.blocked_autorange(min_run_time=2.0)
    return m.median * 1000, m.iqr * 1000


def main() -> str:
    from qdoctor.gather import GatherOptions
    from qdoctor.introspect.state import preserved_torch_state
    from qdoctor.load.target import load_target
    from qdoctor.run.check import CheckOptions, check

    rows = []
    options = CheckOptions(gather=GatherOptions(bench=True, bench_time=1.0, profile=False))
    for spec in TARGETS:
        path = str(ROOT / spec)
        first = check(path, options).facts.benchmark.subject
        second = check(path, options).facts.benchmark.subject
        with preserved_torch_state():
            loaded = load_target(path)
            independent, iqr = independent_ms(loaded.subject, loaded.inputs, loaded.user_engine)
        rows.append(
            [
                spec,
                ms(first.median_ms, first.iqr_ms),
                ms(second.median_ms, second.iqr_ms),
                f"{abs(second.median_ms - first.median_ms) / first.median_ms:.1%}",
                ms(independent, iqr),
                f"{abs(first.median_ms - independent) / independent:.1%}",
            ]
        )
    body = (
        f"Machine: {machine()}\n\n"
        + table(
            [
                "target",
                "qdoctor run 1 (ms)",
                "qdoctor run 2 (ms)",
                "run-to-run",
                "independent Timer (ms)",
                "qdoctor vs independent",
            ],
            rows,
        )
        + "\n\nTargets: run-to-run and qdoctor-vs-independent differences within 10 %."
    )
    write_section("fidelity", "Timing fidelity", body)
    return body


if __name__ == "__main__":
    print(main())
