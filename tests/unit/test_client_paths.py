"""Names in URLs: `hc` percent-encodes them exactly as urllib.parse would."""

from __future__ import annotations

from urllib.parse import quote

from hypothesis import given
from hypothesis import strategies as st

from homecloud.client.paths import quoted


def test_names_pass_unchanged_and_the_rest_is_encoded() -> None:
    assert quoted("web-1.a_b~") == "web-1.a_b~"
    assert quoted("a b/c?d#e%") == "a%20b%2Fc%3Fd%23e%25"
    assert quoted("café") == "caf%C3%A9"
    assert quoted("") == ""


@given(st.text())
def test_as_urllib_quote_with_nothing_safe(text: str) -> None:
    try:
        expected = quote(text, safe="")
    except UnicodeEncodeError:  # a lone surrogate: no URL holds it
        try:
            quoted(text)
        except UnicodeEncodeError:
            return
        raise AssertionError("quoted() encoded what quote() refuses") from None
    assert quoted(text) == expected
