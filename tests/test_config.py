"""The CI gate: [tool.qdoctor] in pyproject.toml, command-line overrides, per-module ignores, --output."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import FIXTURES
from typer.testing import CliRunner

from qdoctor.cli import app
from qdoctor.config import ConfigError, find_pyproject, parse, resolve
from qdoctor.diagnose.findings import Finding, Location, Severity
from qdoctor.diagnose.registry import module_ignored, module_matches
from qdoctor.files import atomic_path, write_text_atomic

runner = CliRunner()
FAST = ["--no-bench", "--no-profile"]


def project(tmp_path: Path, table: str, fixture: str = "prepared_not_converted.py") -> Path:
    """A user project: pyproject.toml at its root, the model two folders down."""
    (tmp_path / "pyproject.toml").write_text(f'[project]\nname = "user"\n\n[tool.qdoctor]\n{table}\n')
    models = tmp_path / "src" / "models"
    models.mkdir(parents=True)
    return Path(shutil.copy(FIXTURES / fixture, models / fixture))


# ---- loading --------------------------------------------------------------------------------------------------


def test_nearest_pyproject_with_a_qdoctor_table_wins(tmp_path):
    model = project(tmp_path, 'fail-on = "error"')
    (model.parent / "pyproject.toml").write_text('[project]\nname = "inner"\n')  # no [tool.qdoctor]: skipped
    assert find_pyproject(model.parent) == tmp_path / "pyproject.toml"
    settings = resolve(str(model))
    assert settings.fail_on == "error" and settings.source == tmp_path / "pyproject.toml"


def test_no_pyproject_gives_defaults(tmp_path):
    model = tmp_path / "m.py"
    model.write_text("")
    settings = resolve(str(model))
    assert (settings.select, settings.ignore, settings.fail_on, settings.exit_zero) == (None, [], "warning", False)


def test_every_key(tmp_path):
    table = {
        "select": ["qd00", "QD1"],
        "ignore": ["QD010"],
        "per-module-ignores": {"backbone.*": ["QD004"]},
        "fail-on": "info",
        "exit-zero": True,
    }
    settings = parse(table, None)
    assert settings.select == ["QD00", "QD1"] and settings.ignore == ["QD010"]
    assert settings.per_module_ignores == {"backbone.*": ["QD004"]}
    assert settings.fail_on == "info" and settings.exit_zero is True


@pytest.mark.parametrize(
    "table, message",
    [
        ({"selct": ["QD002"]}, "unknown key 'selct'"),
        ({"select": "QD002"}, "must be a list"),
        ({"ignore": ["E501"]}, "'E501' is not a rule code"),
        ({"fail-on": "warn"}, "fail-on must be error, warning, info or never"),
        ({"exit-zero": "yes"}, "exit-zero must be true or false"),
        ({"per-module-ignores": ["QD004"]}, "per-module-ignores must be a table"),
        ({"per-module-ignores": {"a": ["X"]}}, "'X' is not a rule code"),
    ],
)
def test_bad_settings_are_one_line_errors(table, message):
    with pytest.raises(ConfigError, match=message) as info:
        parse(table, Path("pyproject.toml"))
    assert "\n" not in str(info.value)


def test_command_line_overrides_the_file(tmp_path):
    model = project(tmp_path, 'select = ["QD002"]\nfail-on = "never"\nexit-zero = true')
    settings = resolve(str(model), select=["QD006"], fail_on="error", exit_zero=False)
    assert settings.select == ["QD006"] and settings.fail_on == "error" and settings.exit_zero is False
    assert resolve(str(model)).select == ["QD002"]


# ---- per-module ignores ---------------------------------------------------------------------------------------


def test_module_patterns():
    assert module_matches("backbone.0.conv", "backbone.*")
    assert module_matches("backbone.0.conv", "backbone")  # a module covers the modules inside it
    assert not module_matches("backbone2.conv", "backbone")
    assert module_matches("head", "head") and not module_matches("head", "backbone.*")

    finding = Finding("QD004", "unfused", Severity.WARNING, "m", Location(module="backbone.1"))
    assert module_ignored(finding, {"backbone.*": ["QD004"]})
    assert module_ignored(finding, {"backbone": ["qd00"]})  # prefixes, any case
    assert not module_ignored(finding, {"backbone.*": ["QD005"]})
    assert not module_ignored(Finding("QD010", "t", Severity.INFO, "m", Location()), {"*": ["QD"]})  # no module


# ---- the command line -----------------------------------------------------------------------------------------


def test_unknown_key_exits_2_before_running_anything(tmp_path):
    model = project(tmp_path, 'fail_on = "error"')
    result = runner.invoke(app, ["check", str(model), *FAST])
    assert result.exit_code == 2
    assert "unknown key 'fail_on'" in result.output and "Traceback" not in result.output
    assert "[tool.qdoctor]" in result.output and len(result.output.strip().splitlines()) == 1


def test_config_drives_the_exit_code_and_cli_overrides_it(tmp_path):
    model = project(tmp_path, 'fail-on = "never"')
    assert runner.invoke(app, ["check", str(model), *FAST]).exit_code == 0
    assert runner.invoke(app, ["check", str(model), *FAST, "--fail-on", "error"]).exit_code == 1


def test_per_module_ignores_from_the_file(tmp_path):
    # prepared_not_converted's QD006 and QD004 point at module "1"
    model = project(tmp_path, 'per-module-ignores = { "1" = ["QD006", "QD004"] }')
    result = runner.invoke(app, ["check", str(model), *FAST, "-f", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["findings"] == []
    (tmp_path / "pyproject.toml").write_text('[tool.qdoctor]\nper-module-ignores = { "0.*" = ["QD006"] }\n')
    result = runner.invoke(app, ["check", str(model), *FAST, "-f", "json"])
    assert result.exit_code == 1 and json.loads(result.stdout)["findings"][0]["rule"] == "QD006"


def test_exit_zero_in_the_file_and_no_exit_zero_on_the_command_line(tmp_path):
    model = project(tmp_path, "exit-zero = true")
    assert runner.invoke(app, ["check", str(model), *FAST]).exit_code == 0
    assert runner.invoke(app, ["check", str(model), *FAST, "--no-exit-zero"]).exit_code == 1


def test_bad_select_on_the_command_line_exits_2():
    result = runner.invoke(app, ["check", str(FIXTURES / "prepared_not_converted.py"), *FAST, "--select", "QDX"])
    assert result.exit_code == 2 and "'QDX' is not a rule code" in result.output


# ---- --output -------------------------------------------------------------------------------------------------


def test_output_writes_the_report_to_a_file(tmp_path):
    out = tmp_path / "reports" / "qdoctor.sarif"  # missing folders are created
    result = runner.invoke(
        app, ["check", str(FIXTURES / "prepared_not_converted.py"), *FAST, "-f", "sarif", "-o", str(out)]
    )
    assert result.exit_code == 1
    assert result.stdout == ""
    assert json.loads(out.read_text())["runs"][0]["results"][0]["ruleId"] == "QD006"
    assert [p.name for p in out.parent.iterdir()] == ["qdoctor.sarif"]


def test_a_failed_run_leaves_no_file(tmp_path):
    out = tmp_path / "report.md"
    result = runner.invoke(app, ["check", str(tmp_path / "missing.py"), "-f", "markdown", "-o", str(out)])
    assert result.exit_code == 2
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "report.html"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temporary:
            temporary.write_text("half")
            raise RuntimeError("render failed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]
    write_text_atomic(target, "new")
    assert target.read_text() == "new"
    assert (target.stat().st_mode & 0o777) != 0o600  # the mode of a normal file, not mkstemp's private one
