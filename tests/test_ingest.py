import datetime as dt

from pyspark.sql import functions as F

from microseg.prep.ingest import BRONZE_COLUMNS, validate

D = dt.date(2024, 3, 5)
ROWS = [
    ("C1", "t1", D, -10.0, "EUR", "groceries", 90.0),     # good
    ("C1", "t2", D, 2000.0, "EUR", "salary", 2090.0),     # good
    (None, "t3", D, -1.0, "EUR", "groceries", 1.0),       # MISSING_CUSTOMER_ID
    ("C2", " ", D, -1.0, "EUR", "groceries", 1.0),        # MISSING_TXN_ID
    ("C2", "t5", None, -1.0, "EUR", "groceries", 1.0),    # MISSING_DATE
    ("C2", "t6", D, None, "EUR", "groceries", 1.0),       # MISSING_AMOUNT
    ("C2", "t7", D, -1.0, "XXX", "groceries", 1.0),       # UNKNOWN_CURRENCY
    ("C2", "t8", D, -1.0, "EUR", "spaceships", 1.0),      # UNKNOWN_CATEGORY
    ("C2", "t1", D, -5.0, "EUR", "groceries", 1.0),       # DUPLICATE_TXN_ID (of t1)
]
SCHEMA = ("customer_id string, txn_id string, booking_date date, amount double, currency string, "
          "category string, balance_after double")


def _raw(spark):
    return spark.createDataFrame(ROWS, SCHEMA)


def test_validate_keeps_good_rows_and_quarantines_each_reason(spark, ctx):
    classes = [c.name for c in ctx.taxonomy.classes]
    good, bad = validate(_raw(spark), "test", "b1", ["EUR"], classes)
    assert good.columns == BRONZE_COLUMNS
    kept = {r.txn_id: r for r in good.collect()}
    assert set(kept) == {"t1", "t2"}
    assert kept["t1"].amount == -10.0 and kept["t1"].month == dt.date(2024, 3, 1)
    reasons = sorted(r.reason for r in bad.collect())
    assert reasons == sorted(["MISSING_CUSTOMER_ID", "MISSING_TXN_ID", "MISSING_DATE", "MISSING_AMOUNT",
                              "UNKNOWN_CURRENCY", "UNKNOWN_CATEGORY", "DUPLICATE_TXN_ID"])
    # rows in = rows kept + rows quarantined; the raw row is kept verbatim
    assert good.count() + bad.count() == len(ROWS)
    dup = bad.where(F.col("reason") == "DUPLICATE_TXN_ID").head()
    assert '"amount":-5.0' in dup.raw_row and dup.batch_id == "b1"


def test_merge_new_is_idempotent(spark, ctx):
    classes = [c.name for c in ctx.taxonomy.classes]
    good, _ = validate(_raw(spark), "test", "b1", ["EUR"], classes)
    assert ctx.tables.merge_new("transactions", good, ["source", "txn_id"]) == 2
    assert ctx.tables.merge_new("transactions", good, ["source", "txn_id"]) == 0
    assert ctx.tables.read("transactions").count() == 2
    assert ctx.tables.history("transactions").count() == 1   # nothing new: no commit either
    more = good.withColumn("txn_id", F.concat("txn_id", F.lit("-x")))
    assert ctx.tables.merge_new("transactions", more.union(good), ["source", "txn_id"]) == 2
    assert ctx.tables.read("transactions").count() == 4
