import pytest

from camleak.timeutil import format_ts, parse_ts

BASE = 1763640000000  # 2025-11-20T12:00:00Z


@pytest.mark.parametrize(
    "value",
    [
        "2025-11-20T12:00:00Z",
        "2025-11-20T12:00:00+00:00",
        "2025-11-20T13:00:00+01:00",
        "2025-11-20T07:00:00-05:00",
        "2025-11-20 12:00:00Z",
        "2025-11-20T12:00:00.000000000Z",
        "2025-11-20T12:00:00",  # no offset: UTC
        1763640000,
        1763640000000,
        "1763640000",
        "1763640000000",
        1763640000.0,
    ],
)
def test_every_form_gives_the_same_instant(value):
    assert parse_ts(value) == BASE


def test_nanoseconds_are_cut_to_milliseconds():
    assert parse_ts("2025-11-20T12:00:00.123456789Z") == BASE + 123


@pytest.mark.parametrize("value", ["", "yesterday", None, True, "2025-13-40T00:00:00Z", -5, float("nan")])
def test_unreadable_timestamps_raise(value):
    with pytest.raises(ValueError):
        parse_ts(value)


def test_format_round_trips():
    assert format_ts(BASE) == "2025-11-20T12:00:00Z"
    assert format_ts(BASE + 5) == "2025-11-20T12:00:00.005Z"
    assert parse_ts(format_ts(BASE + 5)) == BASE + 5
