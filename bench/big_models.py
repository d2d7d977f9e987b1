"""`qdoctor check` on big models: wall time, peak resident memory and memory per float model (issue 27).

    python bench/big_models.py                      # all of them (the 1.1B model takes minutes)
    python bench/big_models.py bert_base llama_0_5b  # some; the others keep their last row
    python bench/big_models.py --stop-on-error llama_1_1b  # the script in one exec: no 60 s budget per statement
    python bench/big_models.py --table                # only rewrite the section of RESULTS.md from the kept rows

Each model is a script written the way people write them (random weights from a config: nothing is downloaded),
checked by the CLI in its own process, as a user runs it (`qdoctor check script.py --format json`). Its row keeps the
wall time of the whole command, the check's peak resident memory (`resources.peak_rss_bytes`, the script's own
objects included), the float model's size (parameters and buffers) and their ratio, the memory the check added
over the process at start (torch imported), the slowest phases, and the findings. Rows are kept in
bench/big_models.json so that one model can be measured again alone; the section of RESULTS.md is written from all.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, machine, table, write_section

ROWS = ROOT / "bench" / "big_models.json"
TIMEOUT_S = 1800  # the CLI's own timeout for one check (its default, 300 s, is for ordinary models)

RESNET50 = """\
# torchvision's quantizable ResNet-50 (random weights), fused, calibrated on random batches, converted (fbgemm)
import torch
from torchvision.models.quantization import resnet50

torch.backends.quantized.engine = "fbgemm"
float_model = resnet50(weights=None, quantize=False).eval()
model = resnet50(weights=None, quantize=False).eval()
model.load_state_dict(float_model.state_dict())
model.fuse_model()
model.qconfig = torch.ao.quantization.get_default_qconfig("fbgemm")
torch.ao.quantization.prepare(model, inplace=True)
with torch.no_grad():
    for _ in range(2):
        model(torch.randn(4, 3, 224, 224))
torch.ao.quantization.convert(model, inplace=True)
example_inputs = (torch.randn(1, 3, 224, 224),)
"""

BERT = """\
# bert-base sequence classifier (random weights), torchao int8 dynamic activation + int8 weight, one batch of 128 tokens
import copy

import torch
from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_
from transformers import BertConfig, BertForSequenceClassification

torch.manual_seed(0)
config = BertConfig()
float_model = BertForSequenceClassification(config).eval()
model = copy.deepcopy(float_model)
quantize_(model, Int8DynamicActivationInt8WeightConfig())
input_ids = torch.randint(0, config.vocab_size, (1, 128))
with torch.no_grad():
    logits = model(input_ids).logits
"""

LLAMA = """\
# a Llama-architecture causal LM of {label} (random weights from a config), torchao int8 dynamic activation + int8
# weight, generating from a 32-token prompt
import copy

import torch
from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_
from transformers import LlamaConfig, LlamaForCausalLM

torch.manual_seed(0)
config = LlamaConfig(
    hidden_size={hidden},
    intermediate_size={intermediate},
    num_hidden_layers={layers},
    num_attention_heads={heads},
    num_key_value_heads={kv_heads},
    vocab_size=32000,
)
float_model = LlamaForCausalLM(config).eval()
model = copy.deepcopy(float_model)
quantize_(model, Int8DynamicActivationInt8WeightConfig())
prompt = torch.randint(0, config.vocab_size, (1, 32))
with torch.no_grad():
    tokens = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=4, do_sample=False)
"""

MODELS = {
    "resnet50": ("ResNet-50, eager static int8 (fbgemm)", RESNET50),
    "bert_base": ("bert-base, torchao int8 dynamic", BERT),
    "llama_0_5b": (
        "Llama ~0.5B (hidden 1280, 24 layers, 20 heads, 4 kv), torchao int8 dynamic",
        LLAMA.format(label="~0.5B", hidden=1280, intermediate=3584, layers=24, heads=20, kv_heads=4),
    ),
    "llama_1_1b": (
        "Llama 1.1B, TinyLlama's shape (hidden 2048, 22 layers, 32 heads, 4 kv), torchao int8 dynamic",
        LLAMA.format(label="1.1B (TinyLlama's shape)", hidden=2048, intermediate=5632, layers=22, heads=32, kv_heads=4),
    ),
}


def _gb(value: float | None) -> str:
    return f"{value / 1e9:.2f}" if value else "-"


def run_one(name: str, folder: Path, extra: list[str]) -> dict:
    label, source = MODELS[name]
    script = folder / f"{name}.py"
    script.write_text(source)
    command = [sys.executable, "-m", "qdoctor", "check", str(script), "--format", "json", "--timeout", str(TIMEOUT_S)]
    command += extra
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - started
    row: dict = {"name": name, "label": label, "wall_s": round(wall, 1), "exit": done.returncode, "options": extra}
    row["load_average"] = f"{load_before:.1f} -> {os.getloadavg()[0]:.1f}"
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        row["error"] = (done.stderr.strip().splitlines() or ["no output"])[-1][:200]
        return row
    resources = report.get("resources") or {}
    phases = report.get("phase_seconds") or {}
    row.update(
        {
            "peak_rss_bytes": resources.get("peak_rss_bytes"),
            "start_rss_bytes": resources.get("start_rss_bytes"),
            "float_model_bytes": resources.get("float_model_bytes"),
            "added_per_float_model": resources.get("added_per_float_model"),
            "phase_peak_rss_bytes": resources.get("phase_peak_rss_bytes"),
            "worker_status": (report.get("worker") or {}).get("status"),
            "findings": sorted({f["rule"] for f in report.get("findings", [])}),
            "slowest_phases": sorted(
                ((k, round(v, 1)) for k, v in phases.items() if not k.startswith(("phase_", "inside_"))),
                key=lambda kv: -kv[1],
            )[:4],
            "phase_load_s": round(phases.get("phase_load", 0.0), 1),
        }
    )
    language_model = report.get("language_model")
    if language_model:
        for phase in ("prefill", "decode"):
            timed = language_model.get(phase) or {}
            ratio = timed.get("speedup")
            row[f"{phase}_speedup"] = (
                f"{ratio['value']:.2f} ({ratio['low']:.2f}-{ratio['high']:.2f}{', busy' if ratio.get('busy') else ''})"
                if ratio
                else "-"
            )
    return row


def render(rows: dict[str, dict]) -> str:
    lines = []
    for name in MODELS:
        row = rows.get(name)
        if row is None:
            continue
        peak, size = row.get("peak_rss_bytes"), row.get("float_model_bytes")
        lines.append(
            [
                row["label"] + (f" ({' '.join(row['options'])})" if row.get("options") else ""),
                _gb(size),
                row["wall_s"],
                row.get("phase_load_s", "-"),
                _gb(peak),
                f"{peak / size:.1f}" if peak and size else "-",
                row.get("added_per_float_model") or "-",
                ", ".join(f"{k} {v}" for k, v in row.get("slowest_phases", [])) or row.get("error", "-"),
                " ".join(row.get("findings", [])) or "-",
                f"{row.get('prefill_speedup', '-')} / {row.get('decode_speedup', '-')}",
                row["load_average"],
                row.get("measured", "") + (f" ({row['code']})" if row.get("code") else ""),
            ]
        )
    return table(
        [
            "model",
            "fp32 GB",
            "wall s",
            "of it the script s",
            "peak RSS GB",
            "peak / fp32",
            "added / fp32",
            "slowest phases (s)",
            "findings",
            "prefill / decode int8 speedup",
            "load avg (start -> end)",
            "measured (qdoctor commit)",
        ],
        lines,
    )


def busy_note(rows: dict[str, dict]) -> str:
    """Whether the kept rows were measured on a quiet machine, read from their own load averages."""
    cores = os.cpu_count() or 1
    busy = [r["label"] for r in rows.values() if float(str(r.get("load_average", "0")).split()[0]) > 0.75 * cores]
    if not busy:
        return (
            f"All rows were measured on a quiet machine (1-minute load average below {0.75 * cores:.1f} at start).\n\n"
        )
    return (
        f"**Measured while the machine was busy** ({len(busy)} of {len(rows)} rows: {'; '.join(busy)}; load average "
        "in the table): their wall times are an upper bound of what a quiet machine gives; memory figures are not "
        "affected by load. Re-measure on a quiet machine with `python bench/big_models.py NAME`.\n\n"
    )


def main(arguments: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="bench/big_models.py", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("models", nargs="*", help=f"which to measure (default: all of {', '.join(MODELS)})")
    parser.add_argument(
        "--table", action="store_true", help="only rewrite the section of RESULTS.md from the kept rows"
    )
    parser.add_argument(
        "--stop-on-error", action="store_true", help="passed to qdoctor check: run the script in one exec"
    )
    options = parser.parse_args(arguments)
    extra = ["--stop-on-error"] if options.stop_on_error else []
    chosen = [] if options.table else options.models or list(MODELS)
    unknown = [n for n in chosen if n not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {list(MODELS)}")
    rows: dict[str, dict] = json.loads(ROWS.read_text()) if ROWS.exists() else {}
    with tempfile.TemporaryDirectory(prefix="qdoctor-big-") as folder:
        for name in chosen:
            print(f"big_models: checking {name} ...", file=sys.stderr, flush=True)
            row = run_one(name, Path(folder), extra)
            row["measured"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
            row["code"] = subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
            ).stdout.strip()
            rows[name] = row
            ROWS.write_text(json.dumps(rows, indent=1) + "\n")
            print(f"big_models: {name}: {json.dumps(row)}", file=sys.stderr, flush=True)
    body = (
        f"Machine: {machine()}.\n\n"
        "`qdoctor check <script> --format json` (the CLI, as a user runs it; verification on, default bench time) on "
        "scripts written the way people write them, random weights built from configs (bench/big_models.py writes "
        "them). *wall s*: the whole command; *of it the script s*: running the script itself (building, "
        "quantizing and running its model); *peak RSS*: the checking process's peak resident memory, the script's "
        "own float and int8 models included (`resources.peak_rss_bytes`); *peak / fp32*: that peak over the float "
        "model's parameters and buffers; *added / fp32*: the peak minus the process's memory when the check began "
        "(Python, torch and qdoctor imported), over the float model's size (the script's own copies, its "
        "`import transformers` and the activations count in it). The prefill / decode column: float time / int8 "
        "time with its paired 95 % interval (`busy`: measured under contention, verdict withheld). A row marked "
        "`--stop-on-error` ran the script in one exec: statement by statement (the default) stops a top-level "
        "statement after 60 s, which building a 1.1B model takes on a machine this loaded.\n\n"
        + busy_note(rows)
        + render(rows)
    )
    write_section("big_models", "Big models: wall time and peak memory of `qdoctor check` (issue 27)", body)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
