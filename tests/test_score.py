"""What recall is measured against: the pairs whose source camera shows itself somewhere."""

from __future__ import annotations

from camleak.score import identifiable_pairs


def snap(source: str, logged: str, recipient: str, informative: bool = True, truncated: bool = False) -> dict:
    return {"source_device": source, "logged_device": logged, "recipient": recipient,
            "informative": informative, "truncated": truncated}


TRUTH = {
    "exposure_pairs": [["acct-a", "cam-1"], ["acct-b", "cam-2"], ["acct-c", "cam-3"], ["acct-d", "cam-4"]],
    "exposure_pairs_informative": [["acct-a", "cam-1"], ["acct-b", "cam-2"], ["acct-c", "cam-3"], ["acct-d", "cam-4"]],
    "snapshots": {
        # cam-1: leaked under cam-9's name, and seen in its own views: identifiable
        "s1": snap("cam-1", "cam-9", "acct-a"), "s2": snap("cam-1", "cam-1", "acct-own1"),
        # cam-2: leaked, and its only own view is near-black: no frame names it
        "s3": snap("cam-2", "cam-8", "acct-b"), "s4": snap("cam-2", "cam-2", "acct-own2", informative=False),
        # cam-3: leaked, but the log of that very frame names it (an honest log)
        "s5": snap("cam-3", "cam-3", "acct-c"),
        # cam-4: leaked, its own view truncated; shown only by references, when given
        "s6": snap("cam-4", "cam-7", "acct-d"), "s7": snap("cam-4", "cam-4", "acct-own4", truncated=True),
    },
}


def test_a_camera_whose_frames_only_appear_under_other_names_bounds_recall_unless_references_show_it():
    assert identifiable_pairs(TRUTH, set()) == {("acct-a", "cam-1"), ("acct-c", "cam-3")}
    assert identifiable_pairs(TRUTH, {"cam-4"}) == {("acct-a", "cam-1"), ("acct-c", "cam-3"), ("acct-d", "cam-4")}
