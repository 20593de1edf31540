"""The command line: exit codes schedulers understand, errors that say what to do."""

from typer.testing import CliRunner

from microseg.cli import app

runner = CliRunner()


def test_unknown_stage_exits_2_and_lists_the_choices(spark):
    result = runner.invoke(app, ["run", "--stage", "nope"])
    assert result.exit_code == 2
    assert "unknown stage 'nope'" in result.output and "monthly" in result.output and "ingest" in result.output


def test_bad_config_exits_2_naming_the_key(spark):
    result = runner.invoke(app, ["run", "--stage", "summary", "--set", "model.hiden=3"])
    assert result.exit_code == 2 and "model.hiden" in result.output


def test_status_on_an_empty_lakehouse(spark, tmp_path):
    result = runner.invoke(app, ["status", "--set", f"tables.root={tmp_path}"])
    assert result.exit_code == 0, result.output
    assert "bronze.transactions" in result.output and "(not written yet)" in result.output
    assert "microseg-encoder: not registered yet" in result.output
