"""What an encoder was trained for, as its registered spec records it, and the check on it.

A registered encoder records its ``objective`` (resolved parts and weights), the
``feature_names`` of its input in order, and the ``taxonomy_version`` they were built with.
Embedding refuses sequences built otherwise; promotion refuses to compare two encoders that
differ in any of them.
"""

from __future__ import annotations

KEYS = ("objective", "feature_names", "taxonomy_version")


class IncompatibleModel(ValueError):
    """An encoder used on data, or compared with a model, that it was not trained for."""


def mismatches(a: dict, b: dict) -> dict[str, tuple]:
    """``key -> (a's value, b's value)`` for each recorded key on which ``a`` and ``b`` differ."""
    return {k: (a.get(k), b.get(k)) for k in KEYS if a.get(k) != b.get(k)}


def describe(diff: dict[str, tuple], a: str, b: str) -> str:
    """One clause per differing key, naming both values (and a list's first difference)."""
    clauses = []
    for key, (x, y) in diff.items():
        text = f"{key}: {a} has {x!r}, {b} has {y!r}"
        if isinstance(x, list) and isinstance(y, list):
            at = next((i for i, (p, q) in enumerate(zip(x, y)) if p != q), min(len(x), len(y)))
            text += f" (first difference at position {at})"
        clauses.append(text)
    return "; ".join(clauses)


def require(model: dict, data: dict, model_name: str, data_name: str) -> None:
    """Raise :class:`IncompatibleModel` unless ``model`` records what ``data`` holds."""
    diff = mismatches(model, data)
    if diff:
        raise IncompatibleModel(f"{model_name} was not trained for {data_name}: "
                                f"{describe(diff, model_name, data_name)}")
