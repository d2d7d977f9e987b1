"""Isolation end to end: every target in its own worker process, many at once, and no report lost.

One run of the real CLI (a subprocess: real file descriptors) over 20 worker checks with -j 2 -- crashing, hanging,
exiting, killed, noisy and bad-input scripts among tiny good ones -- feeds most tests here. The others run the CLI
with sockets blocked, a single crashing target with --debug, and two timed checks in parallel.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, SCRIPTS

ISOLATION = SCRIPTS / "isolation"
# Scripts that misbehave in every way a user's script can (crash the process, hang, exit, read stdin...).
MISBEHAVING_SCRIPTS = (
    "segfaults.py",
    "hangs.py",
    "exits_in_forward.py",
    "os_exit.py",
    "killed.py",
    "noisy.py",
    "reads_stdin.py",
    "asks_for_input.py",
    "missing_package.py",
    "wrong_shape.py",
)
TIMEOUT = 10  # seconds after start-up: the hanging script is stopped after this

DYNAMIC = """import torch
from torch import nn

float_model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, {n})).eval()
quantized_model = torch.ao.quantization.quantize_dynamic(float_model, {{nn.Linear}})
example_inputs = (torch.randn(2, 8),)
"""
PREPARED = """import torch
from torch import nn

float_model = nn.Sequential(torch.ao.quantization.QuantStub(), nn.Linear(8, {n}), torch.ao.quantization.DeQuantStub())
float_model.eval().qconfig = torch.ao.quantization.get_default_qconfig("x86")
prepared = torch.ao.quantization.prepare(float_model)  # in place; never converted
example_inputs = (torch.randn(2, 8),)
"""
HELPER = "import torch\n\n\ndef make_layer():\n    return torch.nn.Linear(8, 8)\n"


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")  # a zombie waiting for a reaper has ended


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "qdoctor", "check", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=900,
    )


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """20 worker checks, -j 2: (completed process, JSON document, {spec: report}, stderr lines)."""
    folder = tmp_path_factory.mktemp("batch")
    models = folder / "models"
    models.mkdir()
    for n in range(3):
        (models / f"dynamic_{n}.py").write_text(DYNAMIC.format(n=n + 2))
    for n in range(2):
        (models / f"prepared_{n}.py").write_text(PREPARED.format(n=n + 2))
    (models / "helpers.py").write_text(HELPER)  # uses torch, defines no model: skipped
    (folder / "empty").mkdir()
    (folder / "empty" / "README.txt").write_text("no models")
    (folder / "latin1.py").write_bytes(b"import torch\n# Mod\xe8le\nmodel = torch.nn.Linear(2, 2)\n")
    targets = [
        *(str(ISOLATION / name) for name in MISBEHAVING_SCRIPTS),
        str(SCRIPTS / "syntax_error.py"),
        str(SCRIPTS / "no_module.py"),
        str(SCRIPTS / "float_only.py"),
        str(folder / "latin1.py"),
        str(models),
        str(folder / "missing.py"),
        str(folder / "empty"),
    ]
    env = {**os.environ, "QDOCTOR_TEST_HELPER_PID_FILE": str(folder / "helper.pid")}  # see hangs.py
    result = run_cli(
        *targets, "-j", "2", "--no-bench", "--no-profile", "--timeout", str(TIMEOUT), "-f", "json", env=env
    )
    document = json.loads(result.stdout)  # valid JSON whatever the scripts printed
    reports = {r["target"]["spec"]: r for r in document["reports"]}
    return result, document, reports, _explained(result.stderr), folder


def _rel(path: Path) -> str:
    """A path under the repository as the reports print it: the CLI runs from the repository root."""
    return path.relative_to(ROOT).as_posix()


def _spec(name: str) -> str:
    return _rel(ISOLATION / name)


def test_twenty_checks_in_parallel_give_every_report_and_lose_none(batch):
    result, document, reports, _, folder = batch
    expected = [
        *(_spec(n) for n in MISBEHAVING_SCRIPTS),
        _rel(SCRIPTS / "syntax_error.py"),
        _rel(SCRIPTS / "no_module.py"),
        _rel(SCRIPTS / "float_only.py"),
        str(folder / "latin1.py"),
        *(
            str(folder / "models" / n)
            for n in ("dynamic_0.py", "dynamic_1.py", "dynamic_2.py", "helpers.py", "prepared_0.py", "prepared_1.py")
        ),
        str(folder / "missing.py"),
        str(folder / "empty"),
    ]
    assert [r["target"]["spec"] for r in document["reports"]] == expected  # 20 worker checks + 2 found at once
    assert [row["target"] for row in document["summary"]["targets"]] == expected
    ran_in_a_worker = [row["target"] for row in document["summary"]["targets"] if row["seconds"] > 0]
    assert ran_in_a_worker == expected[:20]  # the missing file and the empty directory need no worker
    assert result.returncode == document["summary"]["exit_code"] == 2  # the worst of them
    good = [str(folder / "models" / f"dynamic_{n}.py") for n in range(3)]
    assert all(reports[s]["worker"]["status"] == "checked" and reports[s]["findings"] == [] for s in good)
    for n in range(2):
        prepared = reports[str(folder / "models" / f"prepared_{n}.py")]
        # prepared and never calibrated: not converted (QD006) and its observers never saw data (QD001)
        assert {f["rule"] for f in prepared["findings"]} == {"QD006", "QD001"}
    rows = {row["target"]: row for row in document["summary"]["targets"]}
    assert rows[good[0]]["exit_code"] == 0 and rows[str(folder / "models" / "prepared_0.py")]["exit_code"] == 1


def test_a_segfault_gives_a_partial_report_with_the_users_line(batch):
    _, _, reports, _, _ = batch
    report = reports[_spec("segfaults.py")]
    worker = report["worker"]
    assert worker["status"] == "crashed" and worker["exit_code"] == -11
    assert "segmentation fault (SIGSEGV) at segfaults.py:14 `ctypes.string_at(0)" in worker["reason"]
    assert report["crash"]["type"] == "SIGSEGV" and report["crash"]["line"] == 14
    assert report["target"]["subject"] == "model" and report["target"]["input_shapes"] == [[1, 4]]  # gathered before
    assert report["notes"][0].startswith("the check did not finish: the worker process crashed")


def test_a_hang_is_stopped_at_the_timeout_and_says_where_it_was(batch):
    report = batch[2][_spec("hangs.py")]
    assert report["worker"]["status"] == "timed out"
    assert report["worker"]["reason"].startswith(f"timed out after {TIMEOUT} s at hangs.py:24 `time.sleep(0.05)`")
    helper = int((batch[4] / "helper.pid").read_text())  # the process the hanging script started went with it
    deadline = time.monotonic() + 30
    while not _gone(helper) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _gone(helper)


def test_sys_exit_os_exit_and_a_kill_are_reported(batch):
    reports = batch[2]
    exited = reports[_spec("exits_in_forward.py")]["worker"]
    assert exited["status"] == "exited" and "called sys.exit(3) at exits_in_forward.py:14" in exited["reason"]
    os_exit = reports[_spec("os_exit.py")]["worker"]
    assert os_exit["status"] == "exited" and os_exit["exit_code"] == 7 and "os._exit()" in os_exit["reason"]
    killed = reports[_spec("killed.py")]["worker"]
    assert killed["status"] == "crashed" and killed["exit_code"] == -9
    assert (
        "killed (SIGKILL) by something other than qdoctor, usually the kernel's out-of-memory killer"
        in killed["reason"]
    )


def test_bad_input_gives_one_line_each_and_no_traceback(batch):
    _, _, reports, stderr, folder = batch
    expected = {
        _spec("asks_for_input.py"): "raised EOFError at line 5 (it read stdin, which qdoctor leaves empty)",
        _spec("missing_package.py"): "imports 'qdoctor_test_no_such_quant_lib', which is not installed",
        _spec("wrong_shape.py"): "layer `0` (Linear) rejected them: expects 16 input features, got 10",
        _rel(SCRIPTS / "syntax_error.py"): "syntax error: invalid syntax",
        _rel(SCRIPTS / "no_module.py"): "no torch.nn.Module found",
        str(folder / "latin1.py"): "is not UTF-8 text (line 2, byte 0xe8)",
        str(folder / "missing.py"): "no such file",
        str(folder / "empty"): "no model files in this directory",
    }
    for spec, message in expected.items():
        assert reports[spec]["worker"]["status"] == "could not check"
        assert message in reports[spec]["worker"]["reason"]
        lines = [line for line in stderr if spec in line]
        assert len(lines) == 1 and lines[0].startswith("qdoctor: ") and message in lines[0], (spec, lines)
    assert not any("Traceback" in line or "Fatal Python error" in line for line in stderr)


def test_a_directory_skips_files_without_a_model(batch):
    _, _, reports, _, folder = batch
    helper = reports[str(folder / "models" / "helpers.py")]
    assert helper["worker"]["status"] == "no model"
    row = next(r for r in batch[1]["summary"]["targets"] if r["target"] == str(folder / "models" / "helpers.py"))
    assert row["exit_code"] == 0


def test_megabytes_of_output_are_captured_and_truncated(batch):
    report = batch[2][_spec("noisy.py")]
    assert report["worker"]["status"] == "checked"
    stdout, stderr = report["target"]["user_stdout"], report["target"]["user_stderr"]
    assert stdout.startswith("epoch 0: loss")
    assert "more characters of output not kept" in stdout  # Python-level prints, bounded by the loader
    assert "native stdout line" in stdout and "more bytes of output not kept" in stdout  # fd 1, bounded here
    assert "native stderr line" in stderr
    assert len(stdout) < 150_000 and len(stderr) < 60_000


def test_a_script_reading_stdin_gets_end_of_file_not_a_hang(batch):
    report = batch[2][_spec("reads_stdin.py")]
    assert report["worker"]["status"] == "checked"
    assert report["load_crash"]["type"] == "EOFError" and report["load_crash"]["line"] == 13
    assert any("it read stdin, which qdoctor leaves empty" in note for note in report["notes"])


def test_a_model_that_is_not_quantized_is_said_so(batch):
    _, _, reports, stderr, _ = batch
    spec = _rel(SCRIPTS / "float_only.py")
    assert reports[spec]["worker"]["status"] == "checked" and reports[spec]["target"]["quantized"] is False
    line = next(line for line in stderr if spec in line)
    assert "not quantized" in line and f"qdoctor compare {spec}" in line


def test_one_target_keeps_the_single_report_shape_and_debug_shows_the_stack():
    result = run_cli(_spec("segfaults.py"), "--no-bench", "--no-profile", "-f", "json", "--debug")
    assert result.returncode == 2
    report = json.loads(result.stdout)
    assert "reports" not in report and report["schema_version"] == 1
    assert report["worker"]["status"] == "crashed"
    assert report["worker"]["stack"][1].endswith("segfaults.py:14 in forward")
    assert _explained(result.stderr)[0].startswith(f"qdoctor: {_spec('segfaults.py')}: the worker process crashed")
    assert "Fatal Python error: Segmentation fault" in result.stderr  # --debug: faulthandler's dump


SITECUSTOMIZE = """
import os
import socket
import sys

LOG = os.environ["QDOCTOR_TEST_NETWORK_LOG"]
NETWORK_EVENTS = ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex", "socket.gethostbyaddr")


def block_network(event, args):
    if event in ("socket.connect", "socket.connect_ex") and args[0].family in (socket.AF_INET, socket.AF_INET6):
        pass
    elif event not in NETWORK_EVENTS:
        return
    with open(LOG, "a") as log:
        log.write(f"{os.getpid()} {event} {args!r}\\n")
    raise OSError(f"network blocked by qdoctor's tests ({event})")


sys.addaudithook(block_network)
"""
PARENT = """
import sys
from qdoctor.cli import app
try:
    app(sys.argv[1:], prog_name="qdoctor")
except SystemExit as exc:
    code = exc.code
assert "torch" not in sys.modules, "the parent process imported torch"
sys.exit(code)
"""


def test_qdoctor_makes_no_network_connection_and_its_parent_never_imports_torch(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(SITECUSTOMIZE)  # every process started below blocks the network
    log = tmp_path / "network.log"
    env = {
        **os.environ,
        "QDOCTOR_TEST_NETWORK_LOG": str(log),
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    control = subprocess.run(
        [sys.executable, "-c", "import socket; socket.create_connection(('127.0.0.1', 9))"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert "network blocked by qdoctor's tests" in control.stderr  # the block works
    log.unlink()

    result = subprocess.run(
        [
            sys.executable,
            "-c",
            PARENT,
            "check",
            str(SCRIPTS / "contract_names.py"),
            _spec("phones_home.py"),
            "-j",
            "2",
            "--bench-time",
            "0.05",
            "-f",
            "json",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=900,
    )
    # a full check (profile, benchmark) succeeded (exit 0, or 1 for findings); the parent never imported torch
    assert result.returncode in (0, 1), result.stderr
    document = json.loads(result.stdout)
    checked = document["reports"][0]
    assert checked["benchmark"]["subject"]["median_ms"] > 0 and checked["profile"]["subject"] is not None
    attempts = log.read_text().splitlines()
    assert attempts and all("weights.example.com" in line for line in attempts), attempts  # only the user's script
    assert "offline: network blocked" in document["reports"][1]["target"]["user_stdout"]


LOGGED_MODEL = """import os
import time

import torch
from torch import nn


class Logged(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 64)

    def forward(self, x):
        with open(os.environ["QDOCTOR_TEST_CALL_LOG"], "a") as log:
            log.write(f"{os.path.basename(__file__)} {time.time()}\\n")
        return self.fc(x)


float_model = Logged().eval()
quantized_model = torch.ao.quantization.quantize_dynamic(float_model, {nn.Linear})
example_inputs = (torch.randn(4, 64),)
"""


def test_parallel_checks_measure_one_at_a_time(tmp_path, monkeypatch):
    from qdoctor.gather import GatherOptions
    from qdoctor.run.batch import check_targets
    from qdoctor.run.check import CheckOptions

    for name in ("first.py", "second.py"):
        (tmp_path / name).write_text(LOGGED_MODEL)
    log = tmp_path / "calls.log"
    monkeypatch.setenv("QDOCTOR_TEST_CALL_LOG", str(log))  # the workers inherit the environment
    options = CheckOptions(gather=GatherOptions(bench=True, bench_time=0.1, profile=True, profile_budget=0.1))
    outcomes = check_targets([str(tmp_path / "first.py"), str(tmp_path / "second.py")], options, jobs=2)

    calls = [(name, float(t)) for name, t in (line.split() for line in log.read_text().splitlines())]
    for outcome, me in zip(outcomes, ("first.py", "second.py"), strict=False):
        assert outcome.status == "checked" and outcome.report.extras["worker"]["measured_alone"] is True
        assert len(outcome.turns) >= 3  # profile the subject, the float baseline; time both together
        assert any("measured alone" in note for note in outcome.report.notes)
        for start, end in outcome.turns:  # while it measured, the other model never ran
            assert not [t for name, t in calls if name != me and start <= t <= end], (me, start, end)
        assert sum(1 for name, t in calls for s, e in outcome.turns if name == me and s <= t <= e) > 20


def test_reports_and_facts_cross_to_a_parent_without_torch():
    """The parent unpickles what workers send without importing torch or the user's script: facts hold plain data."""
    import io
    import pickle

    from conftest import run_check

    from qdoctor.gather import GatherOptions
    from qdoctor.run.check import CheckOptions, check

    modules: set[str] = set()

    class Recording(pickle.Unpickler):
        def find_class(self, module, name):  # every class the parent would have to import
            modules.add(module)
            return super().find_class(module, name)

    snapshots = []
    options = CheckOptions(gather=GatherOptions(bench=True, bench_time=0.05, profile=True, profile_budget=0.05))
    report = check(
        str(SCRIPTS / "contract_names.py"), options, on_stage=lambda stage, facts: snapshots.append(pickle.dumps(facts))
    )
    assert len(snapshots) >= 5
    for data in [*snapshots, pickle.dumps(report), pickle.dumps(run_check(SCRIPTS / "crash_partway.py"))]:
        Recording(io.BytesIO(data)).load()
    assert modules and all(m.startswith("qdoctor.") or m in ("builtins", "copyreg") for m in modules), modules


def _explained(stderr: str) -> list[str]:
    """stderr's lines without the plain progress lines (stderr is a pipe here: progress is printed as lines)."""
    from qdoctor.run.progress_display import PROGRESS_PREFIX

    return [line for line in stderr.splitlines() if not line.startswith(PROGRESS_PREFIX)]


def test_a_killed_worker_slow_to_exit_is_waited_for_without_its_closed_pipe() -> None:
    """A timed-out worker holding gigabytes may outlive the 5 s join after SIGKILL; the next wait of the loop must
    not hand its closed pipe to multiprocessing's wait() (it raised 'OSError: handle is closed', an internal error
    printed for a 1.1B-parameter model's timeout)."""
    import multiprocessing
    from types import SimpleNamespace

    from qdoctor.run import batch

    parent, child = multiprocessing.Pipe()
    real = subprocess.Popen(["sleep", "30"], start_new_session=True)  # its own process group, which _kill ends
    # ...but seen as still running after the kill (exitcode None, join returns at once)
    sleeper = SimpleNamespace(exitcode=None, pid=real.pid, sentinel=child.fileno(), join=lambda timeout=None: None)
    w = batch._Worker(0, SimpleNamespace(), sleeper, parent, Path("."), 0.0, 0.0)
    runner = batch.Runner(options=None)
    runner._kill(w)
    assert w.connection_lost
    runner._wait([w])  # returns (the sentinel is a live pipe end that never becomes ready within 0.5 s)
    child.close()
    assert real.wait(5.0) is not None
