"""`maildrill demo`: a primary and a secondary sink, a short primary outage, the counters.

Until the Locust pipeline lands this is a small sequential sender with naive failover;
it exists so a new machine shows the sinks working end to end with one command.
"""

from __future__ import annotations

import json
import signal
import smtplib
import subprocess
import sys
import time
import urllib.request
from importlib import resources
from pathlib import Path
from typing import Any


def _control(port: int, method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def _send(port: int, msg_id: str) -> None:
    text = (
        f"From: demo@example.com\r\nTo: user@gmail.test\r\nSubject: demo {msg_id}\r\n"
        f"Message-ID: <{msg_id}@maildrill.test>\r\nX-Maildrill-Id: {msg_id}\r\n"
        f"X-Maildrill-Run: demo\r\n\r\nHello from maildrill.\r\n"
    )
    with smtplib.SMTP("127.0.0.1", port, timeout=2) as client:
        client.sendmail("demo@example.com", ["user@gmail.test"], text)


def run_demo(messages: int = 40, out: Path | None = None) -> int:
    out = out or Path("reports") / time.strftime("demo-%Y%m%d-%H%M%S")
    config = resources.files("sinks") / "examples" / "primary-secondary.yaml"
    out.mkdir(parents=True, exist_ok=True)
    log = (out / "sinks.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "sinks", str(config), "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())
        sinks = {s["name"]: s for s in ready["sinks"]}
        order = ["primary", "secondary"]
        tally = {name: 0 for name in order}
        failed = 0
        outage = (messages // 3, 2 * messages // 3)
        listening = ", ".join(f"{n} on port {s['port']}" for n, s in sinks.items())
        print(f"sinks up: {listening}")
        for i in range(messages):
            if i == outage[0]:
                _control(sinks["primary"]["control_port"], "POST", "/faults", {"kind": "down"})
                print(f"message {i}: primary down")
            if i == outage[1]:
                _control(sinks["primary"]["control_port"], "DELETE", "/faults")
                print(f"message {i}: primary back")
            for name in order:
                try:
                    _send(sinks[name]["port"], f"demo-{i}")
                except (OSError, smtplib.SMTPException):
                    continue
                tally[name] += 1
                break
            else:
                failed += 1
        statuses = {n: _control(s["control_port"], "GET", "/status") for n, s in sinks.items()}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
        log.close()
    print(f"\n{'sink':<10} {'sent here':>9} {'accepted':>9} {'refused':>8} {'sessions':>9}")
    ok = True
    for name in order:
        c = statuses[name]["counters"]
        refused = c["deferred"] + c["rejected"]
        print(f"{name:<10} {tally[name]:>9} {c['accepted']:>9} {refused:>8} {c['sessions']:>9}")
        ok = ok and tally[name] == c["accepted"]
    print(f"failed: {failed}; journals in {out}")
    if not ok:
        print("MISMATCH: the sinks' counters differ from what the sender saw", file=sys.stderr)
        return 1
    return 0
