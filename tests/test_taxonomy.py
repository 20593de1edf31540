import pytest
import yaml

from microseg.config import ConfigError
from microseg.taxonomy import TRAITS, load_taxonomy

SHIPPED = "conf/taxonomy.yaml"


def test_shipped_taxonomy_is_valid_and_rich_enough():
    tax = load_taxonomy(SHIPPED)
    assert len(tax.spend_classes) >= 20
    assert "salary" in tax.income_classes
    for name, big5 in tax.coefficients().items():
        assert len(big5) == 5 and all(-1 <= v <= 1 for v in big5), name


def test_documented_directions_hold():
    coef = {k: dict(zip(TRAITS, v)) for k, v in load_taxonomy(SHIPPED).coefficients().items()}
    assert coef["pubs_bars"]["extraversion"] > 0 > coef["pubs_bars"]["conscientiousness"]
    assert coef["charity"]["agreeableness"] > 0.5
    assert coef["gambling"]["neuroticism"] > 0 > coef["gambling"]["conscientiousness"]
    assert coef["travel_flights"]["openness"] > 0.5


def _write(tmp_path, classes):
    path = tmp_path / "tax.yaml"
    path.write_text(yaml.safe_dump({"version": "t", "classes": classes}))
    return path


@pytest.mark.parametrize("classes, message", [
    ([{"name": "a", "kind": "spend", "big5": [0, 0, 0, 0]}], "big5"),
    ([{"name": "a", "kind": "spend", "big5": [0, 0, 0, 0, 1.5]}], r"outside \[-1, 1\]"),
    ([{"name": "a", "kind": "spend", "big5": [0, 0, 0, 0, 0]},
      {"name": "a", "kind": "spend", "big5": [0, 0, 0, 0, 0]}], "duplicate class names"),
    ([{"name": "a", "kind": "spend"}], "needs 5 big5"),
    ([{"name": "a", "kind": "income", "big5": [0, 0, 0, 0, 0]}], "carries no big5"),
])
def test_bad_taxonomy_fails_with_reason(tmp_path, classes, message):
    with pytest.raises(ConfigError, match=message):
        load_taxonomy(_write(tmp_path, classes))
