import pytest

from microseg.config import ConfigError, load_config, parse_override


def test_layers_merge_base_then_local():
    cfg = load_config("local")
    assert cfg.spark.master == "local[2]"          # from local.yaml
    assert cfg.sequences.window_months == 24       # from base.yaml
    assert cfg.tables.names["transactions"] == "bronze.transactions"


def test_extra_file_and_overrides_win(tmp_path):
    extra = tmp_path / "mine.yaml"
    extra.write_text("model:\n  hidden: 7\n  epochs: 3\n")
    cfg = load_config("local", [extra], {"model.epochs": 9})
    assert (cfg.model.hidden, cfg.model.epochs) == (7, 9)


def test_unknown_key_is_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  hiden: 7\n")
    with pytest.raises(ConfigError, match=r"model\.hiden"):
        load_config("local", [bad])


def test_bad_value_is_named():
    with pytest.raises(ConfigError, match=r"model\.epochs"):
        load_config("local", overrides={"model.epochs": "many"})
    with pytest.raises(ConfigError, match=r"generator\.start_month.*YYYY-MM"):
        load_config("local", overrides={"generator.start_month": "2023/01"})


def test_cross_field_rules():
    with pytest.raises(ConfigError, match="min_months"):
        load_config("local", overrides={"sequences.min_months": 30})
    with pytest.raises(ConfigError, match="add up to 1"):
        load_config("local", overrides={"sequences.split.train": 0.9})


def test_table_names_must_be_schema_dot_table():
    with pytest.raises(ConfigError, match="schema.table"):
        load_config("local", overrides={"tables.names.sequences": "sequences"})


def test_missing_environment_file_is_named():
    with pytest.raises(ConfigError, match="nope.yaml does not exist"):
        load_config("nope")


def test_parse_override_reads_yaml_values():
    assert parse_override("model.epochs=3") == ("model.epochs", 3)
    assert parse_override("spark.master=local[1]") == ("spark.master", "local[1]")
    with pytest.raises(ConfigError, match="key.path=value"):
        parse_override("model.epochs")


@pytest.mark.parametrize("key, value, message", [
    ("source.path", "/data/in\x00.csv", "NUL byte or a line break"),
    ("tables.root", "lake\nhouse", "NUL byte or a line break"),
    ("source.path", "ftp://bank/exports", "scheme 'ftp' is not supported"),
    ("mlflow.tracking_uri", "mongodb://db/mlflow", "scheme 'mongodb' is not supported"),
    ("generator.landing", "{root}/../elsewhere", "'..' climbs above"),
    ("train.checkpoint_dir", "s3://bucket/../other-bucket", "'..' climbs above"),
    ("source.mapping", "../outside/mapping.yaml", "'..' climbs above"),
    ("source.loans", "/data/a/../../..", "'..' climbs above"),
    ("taxonomy", "", "is empty"),
    ("source.loans", "  ", "is empty"),
])
def test_bad_paths_fail_naming_the_key(key, value, message):
    with pytest.raises(ConfigError) as err:
        load_config("local", overrides={key: value})
    assert f"{key}: " in str(err.value) and message in str(err.value)


def test_paths_uris_and_volumes_pass():
    good = {
        "tables.root": "/Volumes/main/microseg/lakehouse",
        "source.path": "s3a://bank-exports/cards/2024-*/",
        "source.loans": None,
        "source.mapping": "conf/sources/../sources/card_mcc.yaml",   # '..' that stays inside
        "generator.landing": "{root}/landing",
        "train.checkpoint_dir": "dbfs:/tmp/microseg/checkpoints",
        "taxonomy": "conf/taxonomy.yaml",
        "mlflow.tracking_uri": "sqlite:///tmp/mlflow.db",
    }
    cfg = load_config("local", overrides=good)
    assert (cfg.tables.root, cfg.source.path, cfg.train.checkpoint_dir) == (
        good["tables.root"], good["source.path"], good["train.checkpoint_dir"])
    for uri in ("databricks", "https://mlflow.internal:5000", "file:///srv/mlruns",
                "abfss://c@acct.dfs.core.windows.net/m"):
        assert load_config("local", overrides={"mlflow.tracking_uri": uri}).mlflow.tracking_uri == uri


def test_relative_data_paths_are_taken_from_the_working_directory(tmp_path, monkeypatch):
    cfg = load_config("local", overrides={"tables.root": "lake", "source.path": "exports/ledger/*.csv"})
    monkeypatch.chdir(tmp_path)
    assert cfg.data_path(cfg.source.path) == str(tmp_path / "exports" / "ledger" / "*.csv")
    assert cfg.data_path("{root}/landing") == str(tmp_path / "lake" / "landing")
    assert cfg.data_path("s3a://bank/exports") == "s3a://bank/exports"
    assert cfg.data_path("/data/x") == "/data/x"


def test_registered_model_names_are_ones_unity_catalog_accepts():
    assert load_config("local").mlflow.registered_model == "microseg_encoder"
    assert load_config("local", overrides={"mlflow.registered_model": "dev.ms.enc_1"}).mlflow.registered_model
    for bad in ("microseg-encoder", "a.b.c.d", "my model"):
        with pytest.raises(ConfigError, match=r"mlflow\.registered_model.*Unity Catalog accepts no '-'"):
            load_config("local", overrides={"mlflow.registered_model": bad})


def test_the_loader_is_arrow_unless_set():
    assert load_config("local").train.loader == "arrow"
    assert load_config("local", overrides={"train.loader": "petastorm"}).train.loader == "petastorm"
    with pytest.raises(ConfigError, match=r"train\.loader"):
        load_config("local", overrides={"train.loader": "tfrecord"})
