"""The configuration reference follows the settings model, and conf/base.yaml documents
every setting and nothing else."""

import importlib.util
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("config_reference", ROOT / "scripts" / "config_reference.py")
reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reference)


def test_configuration_reference_is_up_to_date():
    assert reference.DOC.read_text() == reference.render(), "run: python scripts/config_reference.py"


def test_base_yaml_sets_every_setting_and_nothing_else():
    settings = {key for key, _ in reference.leaves()}
    in_base = reference.base_keys(yaml.safe_load(reference.BASE.read_text()))
    assert settings - in_base == set(), "settings missing from conf/base.yaml"
    assert in_base - settings == set(), "keys in conf/base.yaml that are no settings"


def test_the_reference_lists_every_setting_with_its_type_default_and_comment():
    text = reference.DOC.read_text()
    for key, _ in reference.leaves():
        assert f"| `{key}" in text, key
    assert "| `model.kind` | one of `lstm`, `feedforward` | `lstm` | lstm \\| feedforward |" in text
    assert "| `sequences.as_of` | month (YYYY-MM) or null | `null` |" in text
    assert "| `tables.names.transactions` | str | `bronze.transactions` |" in text
