"""Each customer's reference month: the month a decision is made about them.

Features and trait targets use months up to it (``prep/sequences.py``); labels are observed
after it (``prep/labels.py``). The labels and sequences stages both take it from
:func:`customer_references`, so they agree customer by customer. ``sequences.reference``:

- ``as_of``: the run's month for everyone (a scoring run: this month, no forward labels);
- ``loan_date``: the month of the customer's first loan granted up to the run's month (the
  loan book's ``loan_date``); the run's month for customers without one.

Another dated column becomes a reference by adding its name to the setting's choices and
its table to :func:`reference_dates`.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from microseg.config import ConfigError
from microseg.prep.sequences import parse_month


def run_month(monthly_account: DataFrame, as_of: str | None) -> dt.date:
    """The run's month: ``sequences.as_of``, or the latest month in the data."""
    return parse_month(as_of) if as_of else monthly_account.agg(F.max("month")).head()[0]


def reference_dates(reference: str, loans: DataFrame | None) -> DataFrame | None:
    """customer_id, date: the dates ``sequences.reference`` names; None for ``as_of``.

    ConfigError naming the setting when the source has no such dates.
    """
    if reference == "as_of":
        return None
    fix = "set sequences.reference: as_of, or point source.loans at a loan book with them"
    if loans is None:
        raise ConfigError(f"sequences.reference: {reference} needs the source's loan book, and this "
                          f"source has none; {fix}")
    dates = loans.where(F.col(reference).isNotNull()).select("customer_id", F.col(reference).alias("date"))
    if dates.isEmpty():
        raise ConfigError(f"sequences.reference: {reference}: the source's loan book has no "
                          f"{reference} values (no such column, or none parses as a date); {fix}")
    return dates


def customer_references(monthly_account: DataFrame, dates: DataFrame | None, as_of: dt.date) -> DataFrame:
    """customer_id, reference_month for every customer with a month up to ``as_of``: the
    month of their earliest date not after ``as_of``; ``as_of`` without one."""
    customers = monthly_account.where(F.col("month") <= F.lit(as_of)).select("customer_id").distinct()
    if dates is None:
        return customers.select("customer_id", F.lit(as_of).alias("reference_month"))
    month = F.trunc("date", "month")
    first = (dates.where(month <= F.lit(as_of)).groupBy("customer_id")
             .agg(F.min(month).alias("first")))
    return customers.join(first, "customer_id", "left").select(
        "customer_id", F.coalesce("first", F.lit(as_of)).alias("reference_month"))
