"""The search's metadata filter (a dict compared by equality) as a Milvus boolean expression.

Every key and value is written as a quoted or numeric literal built here, never spliced as text: a
string's backslashes and quotes are escaped, control characters other than \\n \\r \\t are refused, so no
value can close its literal and change the expression (`"x\\" or id != \\""` stays one string). Only
scalar values are pushed down: strings, integers, finite floats and booleans, the JSON scalars that
compare by equality the same way in Python (the FAISS engine) and in Milvus.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

METADATA_FIELD = "metadata"
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def string_literal(text: str) -> str:
    """`text` as a double-quoted Milvus string literal that decodes back to exactly `text`."""
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            raise ValueError(f"filter strings may not hold control character {ch!r}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def value_literal(value: Any) -> str:
    """A filter value as a Milvus literal; ValueError for values that cannot be compared by equality."""
    if isinstance(value, bool):  # before int: bool is an int in Python
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"filter values must be finite numbers, got {value!r}")
        return repr(value)
    if isinstance(value, str):
        return string_literal(value)
    raise ValueError(f"filter values must be strings, numbers or booleans, got {type(value).__name__}")


def filter_expression(wanted: Mapping[str, Any] | None) -> str:
    """`metadata["k1"] == v1 and metadata["k2"] == v2 ...` ('' for no filter: every item)."""
    if not wanted:
        return ""
    parts = []
    for key, value in wanted.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"filter keys must be non-empty strings, got {key!r}")
        parts.append(f"{METADATA_FIELD}[{string_literal(key)}] == {value_literal(value)}")
    return " and ".join(parts)
