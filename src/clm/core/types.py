"""Input types shared by API schemas and forms."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

# The largest id the databases store (64-bit signed); a larger one would be a 500 in the driver.
MAX_ID = 2**63 - 1
Id = Annotated[int, Field(ge=1, le=MAX_ID)]
SmallInt = Annotated[int, Field(ge=-32768, le=32767)]


def parse_id(value: object) -> int | None:
    """`value` as a record id, or None when it is not one (junk, zero, negative, too large)."""
    text = str(value).strip()
    # ASCII digits only: str.isdigit() also admits '²' and the like, which int() refuses.
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        return None
    number = int(text)
    return number if 1 <= number <= MAX_ID else None
