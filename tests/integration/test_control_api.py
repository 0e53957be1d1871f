"""The control API, as documented at the top of sinks/control.py, over real HTTP."""

from __future__ import annotations

import http.client
import json
import smtplib
import time

import pytest

from sinks.effects import EFFECTS
from tests.helpers import LATE_S, connect_refused, message, read_csv, wait_until

REJECT_MAIL = {"kind": "reject", "stage": "mail", "code": 550, "enhanced": "5.7.1"}


def raw_request(sinks, method: str, path: str, body: bytes | None = None) -> tuple[int, str]:
    """A request with any body at all; returns (status, body text)."""
    port = int(sinks.control_url("mx").rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {sinks.set.token}"}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def mail_code(sinks) -> int:
    """The reply to MAIL on a fresh session: shows which behaviours are in force."""
    try:
        with sinks.smtp("mx") as client:
            client.ehlo()
            return client.mail("a@example.com")[0]
    except smtplib.SMTPConnectError as exc:
        return exc.smtp_code


def test_health(start_sinks):
    sinks = start_sinks({"sinks": [{"name": "mx"}]})
    assert sinks.control("mx", "GET", "/health") == (
        200,
        {"status": "ok", "name": "mx", "listening": True},
    )


def test_status_counts_what_clients_sent(start_sinks):
    sinks = start_sinks(
        {"sinks": [{"name": "mx", "behaviours": [dict(REJECT_MAIL, probability=0.5)]}]}
    )
    sent = accepted = refused = size = 0
    with sinks.smtp("mx") as client:
        client.ehlo()
        for i in range(12):
            text = message(f"m{i}")
            sent += 1
            if client.mail("a@example.com")[0] == 550:
                refused += 1
                continue
            client.rcpt("b@example.com")
            assert client.data(text)[0] == 250
            accepted += 1
            size += len(text)
    status, body = sinks.control("mx", "GET", "/status")
    assert status == 200
    assert (body["name"], body["port"], body["listening"]) == ("mx", sinks.port("mx"), True)
    assert 0 < refused < sent
    counters = body["counters"]
    assert counters["accepted"] == accepted
    assert counters["rejected"] == refused
    assert counters["bytes"] == size
    assert counters["sessions"] == 1
    assert [a["kind"] for a in body["active"]] == ["reject"]


def test_kinds_lists_every_effect_with_its_parameters(start_sinks):
    sinks = start_sinks({"sinks": [{"name": "mx"}]})
    status, kinds = sinks.control("mx", "GET", "/kinds")
    assert status == 200
    assert set(kinds) == set(EFFECTS)
    assert all(k["summary"] for k in kinds.values())
    throttle = kinds["throttle"]["params"]
    assert "rate" in throttle["required"]
    assert {"rate", "burst", "per", "preset", "reply", "stage"} <= set(throttle["properties"])
    assert kinds["down"]["params"].get("properties", {}) == {}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "kind"),
        ({"kind": "nope"}, "kind"),
        ({"kind": "throttle"}, "rate"),
        ({"kind": "throttle", "rate": -1}, "rate"),
        ({"kind": "throttle", "rate": 1, "per": "planet"}, "per"),
        ({"kind": "latency", "ms": 10, "colour": "red"}, "colour"),
        ({"kind": "reject", "stage": "nowhere", "code": 550}, "stage"),
        ({"kind": "reject", "stage": "mail", "code": 250}, "code"),
        ({"kind": "reject", "stage": "mail", "code": 550, "enhanced": "4.7.1"}, "enhanced"),
        ({"kind": "drop", "probability": 0}, "probability"),
        ({"kind": "drop", "probability": 1.5}, "probability"),
        ({"kind": "down", "duration": -1}, "duration"),
        ({"kind": "down", "duration": 0}, "duration"),
        ({"kind": "down", "duration": "5"}, "duration"),
        ({"kind": "down", "duration": True}, "duration"),
        ({"kind": "flap", "period_s": 1, "duty": 1}, "duty"),
    ],
)
def test_bad_fault_gives_400_naming_the_field(start_sinks, body, field):
    sinks = start_sinks({"sinks": [{"name": "mx"}]})
    status, reply = sinks.control("mx", "POST", "/faults", body)
    assert status == 400
    assert field in reply["error"]
    assert sinks.control("mx", "GET", "/faults") == (200, [])
    assert read_csv(sinks.journal_dir / "faults-mx.csv") == []


@pytest.mark.parametrize("duration", ["NaN", "Infinity", "-Infinity"])
def test_duration_must_be_finite(start_sinks, duration):
    """JSON parsers take NaN; a NaN timer would corrupt the loop's schedule."""
    sinks = start_sinks({"sinks": [{"name": "mx"}]})
    status, text = raw_request(
        sinks, "POST", "/faults", f'{{"kind": "busy", "duration": {duration}}}'.encode()
    )
    assert status == 400
    assert "duration" in json.loads(text)["error"]


@pytest.mark.parametrize(
    ("body", "message_part"),
    [(b"{not json", "not JSON"), (b"[1, 2]", "JSON object"), (b"", "not JSON")],
)
def test_body_that_is_not_a_json_object_gives_400(start_sinks, body, message_part):
    sinks = start_sinks({"sinks": [{"name": "mx"}]})
    status, text = raw_request(sinks, "POST", "/faults", body)
    assert status == 400
    assert message_part in json.loads(text)["error"]


def test_fault_round_trip(start_sinks):
    sinks = start_sinks({"sinks": [{"name": "mx"}]})
    status, fault = sinks.control("mx", "POST", "/faults", REJECT_MAIL)
    assert status == 201
    assert (fault["kind"], fault["origin"], fault["until"]) == ("reject", "command", None)
    assert fault["params"] == {k: v for k, v in REJECT_MAIL.items() if k != "kind"}
    assert sinks.control("mx", "GET", "/faults") == (200, [fault])
    assert sinks.control("mx", "GET", "/behaviours") == (200, [])
    assert mail_code(sinks) == 550

    assert fault["state"] == "active"
    assert fault["start_at"] <= fault["started"]
    status, stopped = sinks.control("mx", "DELETE", f"/faults/{fault['id']}")
    assert status == 200
    assert stopped == dict(fault, state="ended", ended=stopped["ended"])
    assert stopped["ended"] >= fault["started"]
    assert sinks.control("mx", "GET", "/faults") == (200, [])
    assert sinks.control("mx", "GET", f"/faults/{fault['id']}") == (200, stopped)
    assert mail_code(sinks) == 250
    status, reply = sinks.control("mx", "DELETE", f"/faults/{fault['id']}")
    assert status == 404
    assert fault["id"] in reply["error"]
    rows = read_csv(sinks.journal_dir / "faults-mx.csv")
    assert [(r["fault_id"], r["state"], r["origin"]) for r in rows] == [
        (fault["id"], "start", "command"),
        (fault["id"], "stop", "command"),
    ]


def test_fault_with_duration_clears_itself(start_sinks):
    sinks = start_sinks({"sinks": [{"name": "mx"}]})
    status, fault = sinks.control("mx", "POST", "/faults", {"kind": "down", "duration": 0.3})
    assert status == 201
    assert fault["until"] - fault["started"] == pytest.approx(0.3, abs=1e-3)
    assert connect_refused(sinks.port("mx"))
    # The fault leaves the list as its stop begins; the stop row follows the reopening.
    journal = sinks.journal_dir / "faults-mx.csv"
    assert wait_until(lambda: len(read_csv(journal)) == 2, timeout=3)
    assert sinks.control("mx", "GET", "/faults")[1] == []
    start, stop = (float(r["time"]) for r in read_csv(journal))
    assert 0.3 - 0.002 <= stop - start < 0.3 + LATE_S  # never early, late as a busy loop
    assert sinks.control("mx", "GET", "/health")[1]["listening"] is True
    with sinks.smtp("mx") as client:
        assert client.noop()[0] == 250


def test_delete_faults_by_kind_and_all(start_sinks):
    sinks = start_sinks({"sinks": [{"name": "mx", "behaviours": [{"kind": "latency", "ms": 1}]}]})
    ids = {}
    for body in (REJECT_MAIL, {"kind": "drop"}, dict(REJECT_MAIL, code=551)):
        status, fault = sinks.control("mx", "POST", "/faults", body)
        assert status == 201
        ids.setdefault(fault["kind"], []).append(fault["id"])
    status, stopped = sinks.control("mx", "DELETE", "/faults?kind=reject")
    assert (status, sorted(f["id"] for f in stopped)) == (200, sorted(ids["reject"]))
    assert [f["id"] for f in sinks.control("mx", "GET", "/faults")[1]] == ids["drop"]
    assert sinks.control("mx", "DELETE", "/faults?kind=reject") == (200, [])
    status, stopped = sinks.control("mx", "DELETE", "/faults")
    assert [f["id"] for f in stopped] == ids["drop"]
    # Steady behaviours are not faults: DELETE /faults leaves them.
    assert [b["kind"] for b in sinks.control("mx", "GET", "/behaviours")[1]] == ["latency"]


def test_behaviours_add_replace_remove(start_sinks):
    sinks = start_sinks({"sinks": [{"name": "mx", "behaviours": [REJECT_MAIL]}]})
    (configured,) = sinks.control("mx", "GET", "/behaviours")[1]
    assert (configured["kind"], configured["origin"]) == ("reject", "behaviour")
    assert mail_code(sinks) == 550
    # A behaviour is not a fault: the fault endpoints do not touch it.
    assert sinks.control("mx", "DELETE", f"/faults/{configured['id']}")[0] == 404
    assert sinks.control("mx", "GET", "/faults") == (200, [])

    status, added = sinks.control("mx", "POST", "/behaviours", dict(REJECT_MAIL, code=551))
    assert (status, added["origin"]) == (201, "behaviour")
    assert mail_code(sinks) == 550, "the first behaviour still answers first"

    busy = dict(REJECT_MAIL, code=421, enhanced="4.7.0")
    status, replaced = sinks.control("mx", "PUT", f"/behaviours/{configured['id']}", busy)
    assert status == 200
    assert replaced["id"] == configured["id"], "PUT keeps the resource where it was"
    assert replaced["params"]["code"] == 421
    listed = sinks.control("mx", "GET", "/behaviours")[1]
    assert [b["id"] for b in listed] == [configured["id"], added["id"]], "and its place in order"
    assert mail_code(sinks) == 421

    status, reply = sinks.control(
        "mx", "PUT", f"/behaviours/{configured['id']}", {"kind": "reject", "code": 550}
    )
    assert status == 400
    assert "stage" in reply["error"]
    assert sinks.control("mx", "GET", "/behaviours")[1] == listed, "a bad PUT changes nothing"

    status, removed = sinks.control("mx", "DELETE", f"/behaviours/{configured['id']}")
    assert (status, removed) == (200, dict(replaced, state="ended", ended=removed["ended"]))
    assert mail_code(sinks) == 551
    assert sinks.control("mx", "DELETE", f"/behaviours/{added['id']}")[0] == 200
    assert mail_code(sinks) == 250
    assert sinks.control("mx", "GET", "/behaviours") == (200, [])


def test_unknown_ids_and_paths_give_404(start_sinks):
    sinks = start_sinks({"sinks": [{"name": "mx"}]})
    _, fault = sinks.control("mx", "POST", "/faults", {"kind": "drop"})
    assert sinks.control("mx", "DELETE", "/faults/nope-9")[0] == 404
    assert sinks.control("mx", "PUT", "/behaviours/nope-9", REJECT_MAIL)[0] == 404
    assert sinks.control("mx", "PUT", f"/behaviours/{fault['id']}", REJECT_MAIL)[0] == 404
    assert sinks.control("mx", "DELETE", f"/behaviours/{fault['id']}")[0] == 404
    assert raw_request(sinks, "GET", "/nowhere")[0] == 404
    assert raw_request(sinks, "PATCH", "/faults")[0] == 405
    assert [f["id"] for f in sinks.control("mx", "GET", "/faults")[1]] == [fault["id"]]


def test_control_api_refuses_requests_without_the_run_token(start_sinks):
    import urllib.error
    import urllib.request

    sinks = start_sinks({"sinks": [{"name": "primary"}]})
    url = sinks.control_url("primary", "/faults")
    body = b'{"kind": "down"}'
    for headers in ({}, {"Authorization": "Bearer not-the-token"}, {"Authorization": "x"}):
        request = urllib.request.Request(url, data=body, method="POST", headers=headers)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code == 401
        refused.value.close()
    assert sinks.sink("primary").effects == {}
    assert sinks.control("primary", "POST", "/faults", {"kind": "down"})[0] == 201


# -- faults sent ahead (start_at) --------------------------------------------------------


def test_a_fault_sent_ahead_waits_pending_then_starts_at_its_time(start_sinks):
    sinks = start_sinks({"sinks": [{"name": "mx"}]})
    start_at = time.time() + 0.6
    body = dict(REJECT_MAIL, start_at=start_at, duration=30)
    status, fault = sinks.control("mx", "POST", "/faults", body)
    assert status == 201
    assert (fault["state"], fault["origin"], fault["started"]) == ("pending", "schedule", None)
    assert fault["start_at"] == pytest.approx(start_at, abs=1e-6)
    assert fault["until"] == pytest.approx(start_at + 30, abs=1e-6)
    assert sinks.control("mx", "GET", "/faults") == (200, [fault])
    assert sinks.control("mx", "GET", f"/faults/{fault['id']}") == (200, fault)
    assert mail_code(sinks) == 250, "pending: not in force"
    journal = sinks.journal_dir / "faults-mx.csv"
    assert read_csv(journal) == []

    assert wait_until(lambda: time.time() >= start_at, timeout=5)
    assert mail_code(sinks) == 550, "in force from its start_at"
    (row,) = read_csv(journal)
    assert (row["state"], row["origin"], row["fault_id"]) == ("start", "schedule", fault["id"])
    assert start_at <= float(row["time"]) < start_at + LATE_S
    assert json.loads(row["params"])["start_at"] == pytest.approx(start_at, abs=1e-6)
    status, now = sinks.control("mx", "GET", f"/faults/{fault['id']}")
    assert (now["state"], now["started"]) == ("active", pytest.approx(float(row["time"])))


def test_delete_cancels_a_pending_fault_and_a_live_command_still_starts_at_once(start_sinks):
    sinks = start_sinks({"sinks": [{"name": "mx"}]})
    start_at = time.time() + 0.4
    status, ahead = sinks.control("mx", "POST", "/faults", {"kind": "down", "start_at": start_at})
    assert status == 201
    status, cancelled = sinks.control("mx", "DELETE", f"/faults/{ahead['id']}")
    assert (status, cancelled["state"], cancelled["started"]) == (200, "cancelled", None)
    assert sinks.control("mx", "GET", "/faults") == (200, [])
    assert sinks.control("mx", "GET", f"/faults/{ahead['id']}") == (200, cancelled)
    status, _again = sinks.control("mx", "DELETE", f"/faults/{ahead['id']}")
    assert status == 404, "cancelled once"
    # DELETE /faults cancels pending faults too.
    status, other = sinks.control("mx", "POST", "/faults", {"kind": "down", "start_at": start_at})
    (gone,) = sinks.control("mx", "DELETE", "/faults")[1]
    assert gone == dict(other, state="cancelled", ended=gone["ended"])

    # A command without start_at starts now, as before.
    status, live = sinks.control("mx", "POST", "/faults", REJECT_MAIL)
    assert (status, live["state"], live["origin"]) == (201, "active", "command")
    assert mail_code(sinks) == 550
    assert wait_until(lambda: time.time() > start_at + 0.3, timeout=5)
    assert not connect_refused(sinks.port("mx")), "the cancelled downs never came"
    rows = read_csv(sinks.journal_dir / "faults-mx.csv")
    assert [(r["fault_id"], r["state"]) for r in rows] == [(live["id"], "start")]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"kind": "down", "start_at": "soon"}, "start_at: must be a number"),
        ({"kind": "down", "start_at": True}, "start_at: must be a number"),
        ({"kind": "down", "start_at": -1}, "start_at: must be epoch seconds >= 0"),
        ({"kind": "down", "start_at": 1e300}, "start_at"),
        ({"kind": "down", "start_at": 4e9 + 1e9}, "at most 7 days"),
        ({"kind": "down", "start_at": 1000, "duration": 5}, "its window ended"),
    ],
)
def test_a_start_at_that_cannot_be_scheduled_is_400_in_one_line(start_sinks, body, words):
    sinks = start_sinks({"sinks": [{"name": "mx"}]})
    status, reply = sinks.control("mx", "POST", "/faults", body)
    assert status == 400
    assert words in reply["error"]
    assert "\n" not in reply["error"]
    assert sinks.control("mx", "GET", "/faults") == (200, [])


def test_a_start_at_already_past_starts_at_once_and_ends_as_planned(start_sinks):
    sinks = start_sinks({"sinks": [{"name": "mx"}]})
    start_at = time.time() - 0.2
    # Its window still open when a loaded machine gets the request to the sink late (with
    # 0.5 s, four test workers on two cores once made it "its window ended").
    duration = 0.5 + 4 * LATE_S
    body = dict(REJECT_MAIL, start_at=start_at, duration=duration)
    status, fault = sinks.control("mx", "POST", "/faults", body)
    assert status == 201, fault
    assert fault["state"] == "active"
    assert fault["started"] - start_at >= 0.2, "its start row says how late it was"
    assert mail_code(sinks) == 550
    assert wait_until(lambda: sinks.control("mx", "GET", "/faults")[1] == [], timeout=5)
    start, stop = read_csv(sinks.journal_dir / "faults-mx.csv")
    assert float(start["time"]) == pytest.approx(fault["started"], abs=1e-6)
    # Its planned end (journals keep the microsecond, hence the 1e-6).
    assert start_at + duration - 1e-6 <= float(stop["time"]) < start_at + duration + LATE_S


def test_a_behaviour_is_never_scheduled(start_sinks):
    sinks = start_sinks({"sinks": [{"name": "mx"}]})
    body = dict(REJECT_MAIL, start_at=time.time() + 5)
    status, reply = sinks.control("mx", "POST", "/behaviours", body)
    assert (status, reply["error"]) == (400, "start_at: a behaviour starts now; schedule a "
                                             "fault instead")  # fmt: skip
