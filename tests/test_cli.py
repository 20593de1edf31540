"""The command line: exit codes schedulers understand, errors that say what to do, progress."""

import datetime as dt
import io
import re
import time

from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from microseg.cli import app
from microseg.config import load_config
from microseg.progress import Progress
from microseg.tables import Tables

runner = CliRunner()


def test_help_lists_every_command():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("run", "generate", "report", "promote", "status", "stages"):
        assert re.search(rf"^\W*{command}\b", result.output, re.M), command
    report = runner.invoke(app, ["report", "--help"])
    assert report.exit_code == 0 and "compare" in report.output and "HTML report" in report.output


def test_unknown_stage_exits_2_and_lists_the_choices():
    result = runner.invoke(app, ["run", "--stage", "nope"])
    assert result.exit_code == 2
    assert "unknown stage 'nope'" in result.output and "monthly" in result.output and "ingest" in result.output


def test_bad_config_exits_2_naming_the_key():
    result = runner.invoke(app, ["run", "--stage", "summary", "--set", "model.hiden=3"])
    assert result.exit_code == 2 and "model.hiden" in result.output
    result = runner.invoke(app, ["run", "--set", "stages=[ingest, nope]"])
    assert result.exit_code == 2 and "unknown stage(s) ['nope']" in result.output
    result = runner.invoke(app, ["run", "--set", "source.path={root}/in"])
    assert result.exit_code == 2 and "not valid YAML" in result.output and """'source.path="{root}/in"'""" in result.output


def test_the_all_flow_generates_only_for_the_generator_source():
    from microseg.pipeline import FLOWS, flow_stages

    assert flow_stages(load_config("local"), "all") == FLOWS["all"]            # the demo: generate first
    real = FLOWS["all"][1:]
    assert FLOWS["all"][0] == "generate"
    assert flow_stages(load_config("berka"), "all") == real
    assert flow_stages(load_config("databricks"), "all") == real
    for adapter in ("files", "statements"):
        assert flow_stages(load_config("local", overrides={"source.adapter": adapter}), "all") == real
    own = load_config("berka", overrides={"stages": ["ingest", "aggregate"]})
    assert flow_stages(own, "all") == ["ingest", "aggregate"]                  # a stages list still wins


def test_generate_in_the_stages_of_a_real_source_exits_2_naming_both_keys():
    result = runner.invoke(app, ["run", "--env", "berka", "--set", "stages=[generate, ingest]"])
    assert result.exit_code == 2
    assert "config key stages" in result.output and "source.adapter is 'berka'" in result.output


def test_bad_rows_option_is_checked_before_anything_runs():
    result = runner.invoke(app, ["generate", "--bad-rows", "UNPARSABLE_DATE"])
    assert result.exit_code == 2 and "write REASON=rate" in result.output
    result = runner.invoke(app, ["generate", "--bad-rows", "NO_SUCH_REASON=0.1"])
    assert result.exit_code == 2 and "generator.bad_rows" in result.output


def test_a_failing_stage_exits_1_naming_it_and_what_to_do(spark, tmp_path):
    result = runner.invoke(app, ["run", "--stage", "aggregate", "--set", f"tables.root={tmp_path}"])
    assert result.exit_code == 1
    error, hint = result.output.strip().splitlines()[-2:]
    assert error.startswith("error: aggregate failed: table bronze.transactions") and "does not exist" in error
    assert "microseg run --stage aggregate" in hint and "microseg status" in hint


def test_generate_options_are_generator_settings():
    result = runner.invoke(app, ["generate", "--customers", "0"])
    assert result.exit_code == 2 and "generator.customers" in result.output
    result = runner.invoke(app, ["generate", "--start-month", "2024-13"])
    assert result.exit_code == 2 and "generator.start_month" in result.output


def test_a_flow_failing_halfway_names_the_failing_stage(spark, tmp_path):
    cfg = load_config("local", overrides={"tables.root": str(tmp_path)})
    profiles = spark.createDataFrame([(dt.date(2024, 12, 1), 0, 0, 5)],
                                     "as_of date, segment int, coarse_segment int, customers long")
    account = spark.createDataFrame([("C1", dt.date(2024, 12, 1), 100.0)], "customer_id string, month date, end_balance double")
    Tables(spark, cfg).overwrite("segment_profiles", profiles)   # all that summary reads
    Tables(spark, cfg).overwrite("monthly_account", account)     # (its balance coverage)
    result = runner.invoke(app, ["run", "--set", "stages=[summary, personality]", "--set", f"tables.root={tmp_path}"])
    assert result.exit_code == 1
    assert re.search(r"^\[summary\] done in \d+\.\d s$", result.output, re.M)
    assert "error: personality failed: table silver.monthly_spend" in result.output


def test_progress_reports_running_spark_stages(spark):
    out = io.StringIO()
    with Progress(spark, "slow", every=0.2, stream=out) as progress:
        spark.sparkContext.parallelize(range(4), 4).map(lambda x: time.sleep(1.5) or x).collect()
        progress.say("[slow] done")
        progress.start("next")
        time.sleep(0.5)
    lines = out.getvalue().splitlines()
    assert any(re.fullmatch(r"\[slow\] \d+\.\d s  stage \d+: [0-4]/4 tasks", line) for line in lines), lines
    assert "[slow] done" in lines and any(line.startswith("[next] ") for line in lines)
    assert "\x1b" not in out.getvalue() and "\r" not in out.getvalue()   # not a terminal: plain lines


def test_promote_moves_the_alias_and_refuses_unknown_versions(tmp_path):
    options = ["--set", f"tables.root={tmp_path}"]
    result = runner.invoke(app, ["promote", "--version", "1", *options])
    assert result.exit_code == 2 and "model microseg_encoder has no version 1" in result.output
    client = MlflowClient()   # promote pointed MLflow at this lakehouse's store
    client.create_registered_model("microseg_encoder")
    for _ in range(2):
        client.create_model_version("microseg_encoder", source=str(tmp_path))
    result = runner.invoke(app, ["promote", "--version", "1", *options])
    assert result.exit_code == 0 and "champion none -> 1" in result.output
    result = runner.invoke(app, ["promote", "--version", "2", *options])
    assert result.exit_code == 0 and "champion 1 -> 2" in result.output
    assert str(client.get_model_version_by_alias("microseg_encoder", "champion").version) == "2"


def test_status_on_an_empty_lakehouse(spark, tmp_path):
    result = runner.invoke(app, ["status", "--set", f"tables.root={tmp_path}"])
    assert result.exit_code == 0, result.output
    assert "bronze.transactions" in result.output and "(not written yet)" in result.output
    assert "microseg_encoder: not registered yet" in result.output
