"""Fault windows from faults journals: one window per fault, however many workers kept it."""

import pandas as pd

from loadtest.analysis.fault_windows import fault_windows

T = 1_800_000_000.0


def rows(*entries: tuple[float, int, str, str, str]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"time": T + t, "sink": "mx", "worker": w, "kind": k, "state": s, "fault_id": f,
             "origin": "schedule"}
            for t, w, k, s, f in entries
        ]
    )  # fmt: skip


def test_a_fault_kept_by_two_workers_is_one_window_from_first_start_to_last_stop():
    journal = rows(
        (5.002, 1, "reject", "start", "reject-1"),
        (5.000, 0, "reject", "start", "reject-1"),
        (9.000, 0, "reject", "stop", "reject-1"),
        (9.004, 1, "reject", "stop", "reject-1"),
    )
    [window] = fault_windows(journal)
    assert (window.kind, window.fault_id) == ("reject", "reject-1")
    assert window.onset == T + 5.0
    assert window.cleared == T + 9.004


def test_a_fault_still_on_in_one_worker_is_not_cleared():
    journal = rows(
        (5.0, 0, "down", "start", "down-1"),
        (5.0, 1, "down", "start", "down-1"),
        (9.0, 0, "down", "stop", "down-1"),
    )
    [window] = fault_windows(journal)
    assert window.cleared is None


def test_two_faults_of_a_kind_stay_two_windows_with_or_without_ids():
    with_ids = rows(
        (1.0, 0, "down", "start", "down-1"), (2.0, 0, "down", "stop", "down-1"),
        (5.0, 0, "down", "start", "down-2"), (6.0, 0, "down", "stop", "down-2"),
    )  # fmt: skip
    old = with_ids.assign(fault_id="")  # journals from before fault ids
    for journal in (with_ids, old):
        windows = fault_windows(journal)
        assert [(w.onset - T, w.cleared - T) for w in windows if w.cleared] == [
            (1.0, 2.0),
            (5.0, 6.0),
        ]
