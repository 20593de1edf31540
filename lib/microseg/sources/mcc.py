"""Merchant Category Codes (MCC, ISO 18245) to transaction classes, validated at load.

``conf/mcc.yaml`` lists ranges ``{from, to, class, label}`` that together cover every code
0000-9999 exactly once, and a ``credit_class``: an MCC names the merchant of a purchase, so a
credit (money in, e.g. a salary booked under 6012) takes that inflow class whatever its code.
:func:`load_mcc_table` checks the ranges and that every class exists; :func:`mcc_class`
applies the table to Spark columns with a plain expression (no UDF).
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pyspark.sql import Column
from pyspark.sql import functions as F

from microseg.config import ConfigError

CODES = range(10000)


class MccRange(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    first: int = Field(alias="from")
    last: int = Field(alias="to")
    txn_class: str = Field(alias="class")
    label: str = ""      # what the codes are: shown in every message about the range

    @property
    def name(self) -> str:
        """The codes and, when given, the label: how messages name the range."""
        codes = f"{self.first:04d}-{self.last:04d}"
        return f"{codes} ({self.label})" if self.label else codes

    @model_validator(mode="after")
    def _bounds(self) -> MccRange:
        if not (self.first in CODES and self.last in CODES):
            raise ValueError(f"range {self.name}: codes must be within 0000-9999")
        if self.first > self.last:
            raise ValueError(f"range {self.name}: 'from' is greater than 'to'")
        return self


class MccTable(BaseModel):
    """Ranges sorted by code, covering 0000-9999 with no gaps and no overlaps, and the class
    of credits."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    credit_class: str
    ranges: tuple[MccRange, ...]

    @field_validator("ranges")
    @classmethod
    def _sorted(cls, ranges: tuple[MccRange, ...]) -> tuple[MccRange, ...]:
        return tuple(sorted(ranges, key=lambda r: (r.first, r.last)))

    @model_validator(mode="after")
    def _covers_every_code_once(self) -> MccTable:
        if not self.ranges:
            raise ValueError("no ranges: the table must cover 0000-9999")
        problems = []
        if self.ranges[0].first > CODES[0]:
            problems.append(f"codes 0000-{self.ranges[0].first - 1:04d} are in no range")
        for before, after in zip(self.ranges, self.ranges[1:]):
            if after.first <= before.last:
                problems.append(f"range {after.name} overlaps {before.name}")
            elif after.first > before.last + 1:
                problems.append(f"codes {before.last + 1:04d}-{after.first - 1:04d} are in no range "
                                f"(gap between {before.name} and {after.name})")
        if self.ranges[-1].last < CODES[-1]:
            problems.append(f"codes {self.ranges[-1].last + 1:04d}-9999 are in no range")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def class_of(self, code: int) -> str:
        """The class of one code; ValueError outside 0..9999."""
        for r in self.ranges:
            if r.first <= code <= r.last:
                return r.txn_class
        raise ValueError(f"MCC {code} is not within 0000-9999")

    def by_code(self) -> list[str]:
        """The class of every code, indexed by code."""
        return [r.txn_class for r in self.ranges for _ in range(r.first, r.last + 1)]


def load_mcc_table(path: str | Path, class_names: Collection[str]) -> MccTable:
    """Read and validate an MCC table; any problem raises ConfigError naming the range."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"MCC table {path} does not exist")
    try:
        # BaseLoader keeps scalars as text, so 0742 stays decimal (safe_load reads it as octal).
        table = MccTable.model_validate(yaml.load(path.read_text(), Loader=yaml.BaseLoader))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from None
    except ValidationError as err:
        raise ConfigError(f"{path}: {'; '.join(_describe(e) for e in err.errors())}") from None
    unknown = [f"range {r.name} has unknown class {r.txn_class!r}"
               for r in table.ranges if r.txn_class not in class_names]
    if table.credit_class not in class_names:
        unknown.append(f"unknown credit_class {table.credit_class!r}")
    if unknown:
        raise ConfigError(f"{path}: {'; '.join(unknown)} (classes are listed in the taxonomy)")
    return table


def _describe(error: dict) -> str:
    if error["type"] == "value_error":
        return str(error["ctx"]["error"])
    return f"{'.'.join(map(str, error['loc']))}: {error['msg']}"


def mcc_code(col: Column) -> Column:
    """The MCC as an int, or null unless the value is 1 to 4 digits ("0742", 742, " 5411 ")."""
    text = F.trim(col.cast("string"))
    return F.when(text.rlike(r"^[0-9]{1,4}$"), text.cast("int"))


def mcc_class(col: Column, table: MccTable, amount: Column | None = None) -> Column:
    """The class of an MCC column (string or int), null where the code is not 0..9999.
    With ``amount`` (signed, credits > 0), a credit with a valid code is the credit class."""
    by_code = table.by_code()
    names = {name: F.lit(name) for name in set(by_code)}   # one literal per class, reused
    # A literal array indexed by code: one O(1) lookup per row (a CASE WHEN chain over the
    # ranges re-parses the code in every branch and is 5-20x slower). `get` and not
    # `element_at`: on Spark 4.0.5 codegen, element_at(literal array, null) gives the LAST item.
    code = mcc_code(col)
    by_merchant = F.get(F.array(*[names[name] for name in by_code]), code)
    if amount is None:
        return by_merchant
    return F.when(code.isNotNull() & (amount > 0), F.lit(table.credit_class)).otherwise(by_merchant)
