import pytest

from camleak.logparse import FieldMapError, MapUsage, canonicalise, event_key, lookup, parse_field_map


def test_parse_field_map_accepts_canonical_names():
    assert parse_field_map(["account_id=jsonPayload.agentUserId", "ts = timestamp"]) == {
        "account_id": "jsonPayload.agentUserId",
        "ts": "timestamp",
    }


@pytest.mark.parametrize("item", ["account_id", "=x", "account_id=", "nosuch=jsonPayload.x"])
def test_parse_field_map_rejects_bad_items(item):
    with pytest.raises(FieldMapError):
        parse_field_map([item])


def test_lookup_nested_lists_and_dotted_keys():
    record = {"a": {"b": [{"c": 1}]}, "x.y": 2}
    assert lookup(record, "a.b.0.c") == 1
    assert lookup(record, "x.y") == 2
    assert lookup(record, "a.nope") is not None and lookup(record, "a.nope") is lookup(record, "zz")


def test_mapped_path_wins_and_canonical_name_fills_in():
    usage = MapUsage()
    nested = {"timestamp": "2025-11-20T12:00:00Z", "jsonPayload": {"agentUserId": "acct-1", "deviceId": "cam-1"},
              "event": "snapshot_served", "request_id": "r1"}
    event = canonicalise(nested, {"ts": "timestamp", "account_id": "jsonPayload.agentUserId",
                                  "device_id": "jsonPayload.deviceId"}, usage)
    assert (event["account_id"], event["device_id"], event["ts"]) == ("acct-1", "cam-1", "2025-11-20T12:00:00Z")
    flat = {"ts": 1763640000, "account_id": "acct-2", "event": "snapshot_viewed"}
    event = canonicalise(flat, {"account_id": "jsonPayload.agentUserId"}, usage)
    assert event["account_id"] == "acct-2" and event["ts"] == "2025-11-20T12:00:00Z"
    assert usage.hits["account_id"] == 1 and usage.canonical_hits["account_id"] == 1


@pytest.mark.parametrize(
    "record, message",
    [
        ({"account_id": "a", "event": "e"}, r"missing field\(s\): ts"),
        ({"ts": "garbage", "account_id": "a", "event": "e"}, "not a timestamp"),
        ({"ts": 1, "account_id": {"id": 1}, "event": "e"}, "holds a dict"),
    ],
)
def test_bad_records_raise_with_reason(record, message):
    with pytest.raises(ValueError, match=message):
        canonicalise(record, {}, MapUsage())


def test_event_key_dedupes_on_request_and_event():
    a = {"request_id": "r1", "event": "snapshot_served", "ts": "x"}
    b = {"request_id": "r1", "event": "snapshot_served", "ts": "y"}
    c = {"request_id": "r1", "event": "snapshot_viewed", "ts": "x"}
    assert event_key(a) == event_key(b) != event_key(c)
    no_id = {"ts": "t", "account_id": "a", "device_id": "d", "snapshot": "s", "event": "e"}
    assert event_key(no_id) == event_key(dict(no_id)) and event_key(no_id).startswith("h:")
