import re

import pytest
import yaml
from pyspark.sql import functions as F

from microseg.config import ConfigError
from microseg.sources.mcc import load_mcc_table, mcc_class
from microseg.taxonomy import load_taxonomy

SHIPPED = "conf/mcc.yaml"
TAXONOMY = load_taxonomy("conf/taxonomy.yaml")
CLASSES = [c.name for c in TAXONOMY.classes]
INCOME = TAXONOMY.income_classes


@pytest.fixture(scope="module")
def table():
    return load_mcc_table(SHIPPED, CLASSES)


def test_shipped_table_covers_every_code_with_a_taxonomy_class(table):
    by_code = table.by_code()
    assert len(by_code) == 10000
    assert set(by_code) <= set(CLASSES)
    assert [table.class_of(c) for c in range(10000)] == by_code
    for bad in (-1, 10000):
        with pytest.raises(ValueError, match="not within 0000-9999"):
            table.class_of(bad)


@pytest.mark.parametrize("code, expected", [
    (5411, "groceries"), (5812, "dining"), (5813, "pubs_bars"), (5814, "dining"),
    (7995, "gambling"), (8398, "charity"), (6010, "cash_withdrawal"), (6011, "cash_withdrawal"),
    (3000, "travel_flights"), (3299, "travel_flights"), (4511, "travel_flights"),
    (3351, "transport"), (5541, "transport"), (5542, "transport"), (4111, "transport"),
    (3501, "hotels_holidays"), (7011, "hotels_holidays"), (742, "pets"), (5995, "pets"),
    (5942, "books_education"), (8220, "books_education"), (7832, "entertainment"),
    (7997, "health_fitness"), (8011, "healthcare"), (8099, "healthcare"), (5912, "healthcare"),
    (8931, "accountant_fees"), (9222, "fines_penalties"), (6300, "home_insurance"),
    (4900, "utilities"), (4899, "subscriptions"), (5651, "fashion"), (5732, "electronics"),
])
def test_known_codes(table, code, expected):
    assert table.class_of(code) == expected


def test_spark_agrees_with_class_of_and_nulls_garbage(spark, table):
    codes = sorted({c for r in table.ranges for c in (r.first, r.last)} | set(range(0, 10000, 97)))
    text = [(f"{c:04d}", table.class_of(c)) for c in codes]        # leading zeros: "0742"
    text += [(str(c), table.class_of(c)) for c in (7, 42, 742)]    # and without
    text += [(" 5411 ", "groceries")]
    text += [(bad, None) for bad in ("abc", "", None, "12345", "-1", "54.1", "5411x", "00742")]
    df = spark.createDataFrame(text, "mcc string, expected string")
    got = df.select("mcc", "expected", mcc_class(F.col("mcc"), table).alias("got")).collect()
    wrong = [(r.mcc, r.expected, r.got) for r in got if r.got != r.expected]
    assert len(got) == len(text) > 300 and not wrong

    ints = spark.createDataFrame([(c,) for c in (742, 5411, 9999, -1, 10000, None)], "mcc int")
    got = [r.got for r in ints.select(mcc_class(F.col("mcc"), table).alias("got")).collect()]
    assert got == ["pets", "groceries", table.class_of(9999), None, None, None]


def test_a_credit_is_classed_by_direction_not_by_its_code(spark, table):
    assert table.class_of(6012) == "loan_repayment" and table.credit_class in INCOME
    rows = [("6012", 2500.0, table.credit_class),   # a salary booked under "financial institutions"
            ("6012", -300.0, "loan_repayment"),     # a repayment: money out
            ("5411", 4.5, table.credit_class),      # a refund is money in, not groceries spend
            ("5411", -4.5, "groceries"),
            ("5411", 0.0, "groceries"),
            ("5411", None, "groceries"),            # unparsable amount: the code decides
            ("abc", 2500.0, None)]                  # a bad code stays unknown, whatever the sign
    df = spark.createDataFrame(rows, "mcc string, amount double, expected string")
    got = df.select("expected", mcc_class(F.col("mcc"), table, F.col("amount")).alias("got")).collect()
    assert [r.got for r in got] == [r.expected for r in got]


def _write(tmp_path, ranges, credit_class="transfer_in"):
    path = tmp_path / "mcc.yaml"
    path.write_text(yaml.safe_dump({"credit_class": credit_class,
                                    "ranges": [dict(zip(("from", "to", "class"), r)) for r in ranges]}))
    return path


def test_unknown_credit_class_fails(tmp_path):
    path = _write(tmp_path, [(0, 9999, "groceries")], credit_class="windfall")
    with pytest.raises(ConfigError, match="unknown credit_class 'windfall'"):
        load_mcc_table(path, CLASSES)


@pytest.mark.parametrize("ranges, message", [
    ([(0, 5420, "groceries"), (5411, 5411, "groceries"), (5421, 9999, "dining")],
     "range 5411-5411 overlaps 0000-5420"),
    ([(0, 4999, "groceries"), (5100, 9999, "dining")],
     "codes 5000-5099 are in no range (gap between 0000-4999 and 5100-9999)"),
    ([(1, 9999, "dining")], "codes 0000-0000 are in no range"),
    ([(0, 9990, "dining")], "codes 9991-9999 are in no range"),
    ([(0, 5410, "groceries"), (5411, 5411, "spaceships"), (5412, 9999, "dining")],
     "range 5411-5411 has unknown class 'spaceships'"),
    ([(0, 5411, "groceries"), (5420, 5412, "dining"), (5412, 9999, "dining")],
     "range 5420-5412: 'from' is greater than 'to'"),
    ([(0, 9998, "groceries"), (9999, 10000, "dining")], "range 9999-10000: codes must be within 0000-9999"),
    ([(0, "x", "groceries")], "0.to: Input should be a valid integer"),
])
def test_bad_table_fails_naming_the_range(tmp_path, ranges, message):
    path = _write(tmp_path, ranges)
    with pytest.raises(ConfigError, match=re.escape(f"{path}: ")) as err:
        load_mcc_table(path, CLASSES)
    assert message in str(err.value)


def test_a_range_is_named_by_its_label_too(tmp_path):
    path = tmp_path / "mcc.yaml"
    path.write_text(yaml.safe_dump({"credit_class": "transfer_in", "ranges": [
        {"from": 0, "to": 5410, "class": "groceries"},
        {"from": 5411, "to": 5411, "class": "spaceships", "label": "Grocery stores, supermarkets"},
        {"from": 5412, "to": 9999, "class": "dining"}]}))
    with pytest.raises(ConfigError, match=re.escape("range 5411-5411 (Grocery stores, supermarkets) has unknown "
                                                    "class 'spaceships'")):
        load_mcc_table(path, CLASSES)
