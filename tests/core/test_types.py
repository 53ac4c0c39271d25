"""Shared input types: ids from query strings and forms."""

import pytest

from clm.core.types import MAX_ID, parse_id


@pytest.mark.parametrize("value, expected", [
    ("1", 1), (" 42 ", 42), (str(MAX_ID), MAX_ID), (7, 7),
    ("0", None), ("-1", None), ("abc", None), ("", None), ("1.5", None),
    (str(MAX_ID + 1), None), ("9" * 5000, None),
    # str.isdigit() admits these, int() does not (or reads them unexpectedly).
    ("²", None), ("1²", None), ("①", None), ("١٢", None),
])
def test_parse_id(value, expected):
    assert parse_id(value) == expected
