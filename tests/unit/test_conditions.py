from __future__ import annotations

from lykeion.conditions import Check, merge, ready


def test_transition_time_moves_only_on_flip() -> None:
    first = merge([], [Check("FamilyResolved", False, "FamilyNotFound", "missing")], 1, "T1")
    assert first[0]["lastTransitionTime"] == "T1"
    same = merge(
        first, [Check("FamilyResolved", False, "FamilyNotFound", "still missing")], 2, "T2"
    )
    assert same[0]["lastTransitionTime"] == "T1"
    assert same[0]["message"] == "still missing"
    assert same[0]["observedGeneration"] == 2
    flipped = merge(same, [Check("FamilyResolved", True, "FamilyFound")], 2, "T3")
    assert flipped[0]["lastTransitionTime"] == "T3"


def test_ready_aggregates_first_failure() -> None:
    checks = [
        Check("FamilyResolved", True, "FamilyFound"),
        Check("FeaturesResolved", False, "FeaturesNotDefined", "rider.x"),
        Check("Other", False, "OtherReason"),
    ]
    assert ready(checks) == Check("Ready", False, "FeaturesNotDefined", "rider.x")
    assert ready(checks[:1]).ok


def test_merge_keeps_conditions_it_does_not_compute_and_orders_ready_first() -> None:
    current = [
        {
            "type": "Trained",
            "status": "True",
            "reason": "Done",
            "message": "",
            "lastTransitionTime": "T0",
            "observedGeneration": 1,
        }
    ]
    merged = merge(current, [Check("Ready", True, "Ready"), Check("Alpha", True, "A")], 1, "T1")
    assert [c["type"] for c in merged] == ["Ready", "Alpha", "Trained"]
