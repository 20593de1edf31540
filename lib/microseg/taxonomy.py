"""Transaction classes and their Big Five coefficients, validated at load."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, model_validator

from microseg.config import load_model_file

TRAITS = ("openness", "conscientiousness", "extraversion", "agreeableness", "neuroticism")


class TransactionClass(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    kind: Literal["spend", "income", "other"]
    big5: tuple[float, ...] | None = None    # one coefficient per trait, in the order of TRAITS

    @model_validator(mode="after")
    def _coefficients(self) -> TransactionClass:
        if self.kind == "spend":
            if self.big5 is None:
                raise ValueError(f"class {self.name!r}: a spend class needs 5 big5 coefficients, one per "
                                 f"trait of {list(TRAITS)}")
            if len(self.big5) != len(TRAITS):
                lacking = TRAITS[len(self.big5):]
                raise ValueError(f"class {self.name!r}: big5 has {len(self.big5)} coefficients, not one per trait "
                                 f"of {list(TRAITS)}" + (f"; missing trait(s) {list(lacking)}" if lacking else ""))
            bad = [v for v in self.big5 if not -1.0 <= v <= 1.0]
            if bad:
                raise ValueError(f"class {self.name!r}: big5 values {bad} are outside [-1, 1]")
        elif self.big5 is not None:
            raise ValueError(f"class {self.name!r}: a {self.kind} class carries no big5 coefficients")
        return self


class Taxonomy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    version: str
    traits: tuple[str, ...] = TRAITS
    classes: tuple[TransactionClass, ...]

    @model_validator(mode="after")
    def _consistent(self) -> Taxonomy:
        if tuple(self.traits) != TRAITS:
            missing = [t for t in TRAITS if t not in self.traits]
            unknown = [t for t in self.traits if t not in TRAITS]
            raise ValueError(f"traits must be exactly {list(TRAITS)} in that order (missing {missing}, "
                             f"unknown {unknown})")
        names = [c.name for c in self.classes]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate class names: {dupes}")
        if not self.spend_classes:
            raise ValueError("the taxonomy needs at least one spend class")
        return self

    @property
    def spend_classes(self) -> list[str]:
        return [c.name for c in self.classes if c.kind == "spend"]

    @property
    def income_classes(self) -> list[str]:
        return [c.name for c in self.classes if c.kind == "income"]

    def coefficients(self) -> dict[str, tuple[float, ...]]:
        """Spend class -> its 5 coefficients."""
        return {c.name: c.big5 for c in self.classes if c.kind == "spend"}


def load_taxonomy(path: str | Path) -> Taxonomy:
    return load_model_file(path, Taxonomy, "taxonomy (config key `taxonomy`)")
