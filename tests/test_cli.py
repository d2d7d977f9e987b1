"""The command line: exit codes, JSON shape, --help without torch."""

import json
import subprocess
import sys

from conftest import FIXTURES, SCRIPTS
from typer.testing import CliRunner

from qdoctor.cli import app

runner = CliRunner()


def test_help_and_version_do_not_import_torch():
    code = (
        "import sys\n"
        "from qdoctor.cli import app\n"
        "for args in (['--help'], ['--version'], ['check', '--help'], ['compare', '--help']):\n"
        "    try:\n"
        "        app(args, prog_name='qdoctor')\n"
        "    except SystemExit:\n"
        "        pass\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_json_shape_and_exit_code_with_findings():
    result = runner.invoke(
        app, ["check", str(FIXTURES / "prepared_not_converted.py"), "--format", "json", "--bench-time", "0.05"]
    )
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    assert doc["schema_version"] == 1
    assert {"findings", "benchmark", "size", "numerics", "profile", "environment", "crash", "skipped"} <= set(doc)
    finding = doc["findings"][0]
    assert finding["rule"] == "QD006" and finding["severity"] == "error"
    assert {"module", "file", "line"} <= set(finding["location"])
    assert {"evidence", "fix", "verified", "message"} <= set(finding)
    assert doc["benchmark"]["subject"]["median_ms"] > 0
    assert doc["benchmark"]["float"]["median_ms"] > 0
    assert {"median_ms", "iqr_ms", "runs", "noisy"} <= set(doc["benchmark"]["subject"])
    assert doc["crash"] is None


def test_no_bench_gives_null_benchmark_and_fail_on_error_still_fails():
    result = runner.invoke(
        app, ["check", str(FIXTURES / "prepared_not_converted.py"), "-f", "json", "--no-bench", "--fail-on", "error"]
    )
    assert result.exit_code == 1
    assert json.loads(result.stdout)["benchmark"] is None


def test_exit_zero_and_fail_on_never():
    for flag in (["--exit-zero"], ["--fail-on", "never"]):
        result = runner.invoke(
            app, ["check", str(FIXTURES / "prepared_not_converted.py"), "--no-bench", "--no-profile", *flag]
        )
        assert result.exit_code == 0


def test_crash_is_reported_in_json(check_fixture):
    from conftest import as_json

    doc = as_json(check_fixture("seed004_as_written.py", bench=True))
    assert doc["crash"]["type"] == "NotImplementedError"
    assert doc["crash"]["module"] == "0"
    assert doc["benchmark"]["subject"] is None


def test_bad_target_exits_2_with_one_line():
    result = runner.invoke(app, ["check", str(SCRIPTS / "syntax_error.py")])
    assert result.exit_code == 2
    assert "syntax error" in result.output
    assert "Traceback" not in result.output


def test_rules_and_explain():
    result = runner.invoke(app, ["rules"])
    assert result.exit_code == 0 and "QD002" in result.stdout and "QD006" in result.stdout
    result = runner.invoke(app, ["explain", "QD006"])
    assert result.exit_code == 0 and "## Why is this bad?" in result.stdout
    assert runner.invoke(app, ["explain", "QD999"]).exit_code == 2
