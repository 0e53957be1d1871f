"""The Failover tab, served by Locust's own web app (the process that journals the attempts:
the local runner, or the master of a distributed run).

- `GET /failover`: the page (failover.html beside this module), which polls:
- `GET /failover/state`: JSON from loadtest.failover_tab.state;
- `POST /failover/faults` `{server, kind, duration, params}`: start a fault now on a local
  sink, through its control API (`origin: command`, journaled as any other);
- `DELETE /failover/faults/SERVER/ID`: stop one.

With `--dns-control PORT` (the run's DNS server, when the scenario has `dns:`) the same
routes take DNS faults as server `dns`, as a scenario's `faults:` name it (`target: dns`):
checked by the scheduled faults' rules (loadtest.failover_tab.dns_live), then started on
the DNS server, which journals them in faults-dns.csv with `origin: command`.

The sinks' control token stays in this process (from the environment, as `maildrill run`
gives it): the browser only ever talks to Locust's web app, which calls the sinks. Locust's
own UI gets a "Failover" tab too (its `extended_tabs`: a table of the servers, with a link
to this page, which holds the buttons a Locust table cannot).
"""

from __future__ import annotations

import json
import logging
import os
import time
from importlib.resources import files
from typing import Any

from locust.env import Environment

from loadtest.dns_spec import DnsSpec
from loadtest.failover_tab import dns_live, state
from loadtest.fault_event import DNS_TARGET
from loadtest.live_glue import live_of
from loadtest.locust_glue import campaign_of
from maildrill.control_auth import TOKEN_ENV
from sinks.control_client import ActiveFault, ControlClient, ControlError, ControlRefused
from sinks.effects import EFFECTS

log = logging.getLogger("maildrill")

TAB = "failover"


def add_arguments(parser: Any) -> None:
    group = parser.add_argument_group("maildrill failover tab")
    group.add_argument(
        "--sink-controls",
        default="",
        help="the local sinks' control ports, NAME=PORT[,NAME=PORT...], for the Failover "
        f"tab's fault buttons (the token from ${TOKEN_ENV})",
    )
    group.add_argument(
        "--dns-control",
        type=int,
        default=0,
        help="the run's DNS server's control port, for the Failover tab's DNS faults (the "
        f"scenario's dns: section; the token from ${TOKEN_ENV})",
    )


def controls_of(text: str, token: str) -> dict[str, ControlClient]:
    """`NAME=PORT,...` as control clients on 127.0.0.1 (never another host)."""
    out = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, _, port = item.partition("=")
        if not name or not port.isdigit() or not 0 < int(port) < 65536:
            raise SystemExit(f"maildrill: --sink-controls {item!r}: expected NAME=PORT")
        out[name] = ControlClient.on_port(int(port), token, timeout=2.0)
    return out


class FailoverTab:
    """What the routes share: the sinks' clients, the rates' memory, the faults seen."""

    def __init__(
        self,
        environment: Environment,
        controls: dict[str, ControlClient],
        dns: ControlClient | None = None,
    ) -> None:
        self.environment = environment
        self.controls = controls
        self.dns = dns  # the run's DNS server's control API, when the scenario has dns:
        self.rates = state.Rates()
        self.seen: dict[tuple[str, str], ActiveFault] = {}  # every fault a sink reported
        self._dns_offer: dict[str, Any] | None = None  # the DNS form's choices

    def faults(self) -> dict[str, list[ActiveFault]]:
        """Each sink's faults, pending and active, and those seen before that are now over
        (asked for by id: their final state)."""
        out: dict[str, list[ActiveFault]] = {}
        for server, client in self._clients().items():
            try:
                current = {f.id: f for f in client.faults()}
            except ControlError:
                current = {}
            for (where, fault_id), old in list(self.seen.items()):
                if where != server or fault_id in current or old.state in state.DONE:
                    continue
                try:
                    current[fault_id] = client.fault(fault_id)
                except ControlError:
                    continue
            for f in current.values():
                self.seen[server, f.id] = f
            out[server] = [f for (where, _), f in self.seen.items() if where == server]
        return out

    def _clients(self) -> dict[str, ControlClient]:
        """Every control API whose faults the tab follows: the sinks', the DNS server's."""
        return {**self.controls, DNS_TARGET: self.dns} if self.dns else self.controls

    def _dns_spec(self) -> DnsSpec | None:
        """The scenario's `dns:`, where a DNS server takes the tab's faults."""
        scenario = campaign_of(self.environment).scenario
        return scenario.dns if scenario is not None and self.dns is not None else None

    def _dns_rules(self) -> dict[str, Any]:
        """What else of the scenario decides a DNS fault: the resolver its senders ask
        instead (no DNS faults then), and whether a switch may send mail off this machine."""
        scenario = campaign_of(self.environment).scenario
        if scenario is None:
            return {}
        resolver = scenario.resolver.text if scenario.resolver is not None else None
        return {"resolver": resolver, "allow_remote": scenario.allow_remote}

    def snapshot(self) -> dict[str, Any]:
        campaign = campaign_of(self.environment)
        live = live_of(self.environment)
        now = time.time()
        scenario = campaign.scenario
        reported = self.faults()
        return {
            "t_s": round(now - campaign.t0, 3) if campaign.t0 else None,
            "servers": state.servers(live, self.rates, now, list(self.controls)),
            "faults": state.timeline(
                scenario.faults if scenario else [], reported, campaign.t0, now
            ),
            "dns": self._dns_snapshot(reported.get(DNS_TARGET, []), campaign.t0),
            "kinds": sorted(EFFECTS),
            "campaign": state.campaign(live),
            "slo": state.slo_status(scenario.slo if scenario else [], live),
        }

    def _dns_snapshot(self, faults: list[ActiveFault], t0: float) -> dict[str, Any] | None:
        """The DNS form's choices and the DNS faults pending or in force; None (no form)
        without a DNS server."""
        if self._dns_offer is None:  # the zones do not change during a run: read once
            resolver = self._dns_rules().get("resolver")
            self._dns_offer = dns_live.offer(self._dns_spec(), resolver)
        if self._dns_offer is None:
            return None
        return {**self._dns_offer, "faults": dns_live.in_force(faults, t0)}

    def start(self, body: Any) -> tuple[dict[str, Any], int]:
        if not isinstance(body, dict):
            return {"error": "expected a JSON object"}, 400
        server, kind = str(body.get("server", "")), str(body.get("kind", ""))
        if server == DNS_TARGET and self.dns is not None:
            return self.start_dns(self.dns, body)
        if server not in self.controls:
            return {"error": f"{server!r} is no local sink: {', '.join(self.controls)}"}, 400
        params = body.get("params") or {}
        if not isinstance(params, dict):
            return {"error": "params: expected a JSON object"}, 400
        request: dict[str, Any] = {**params, "kind": kind}
        if body.get("duration") not in (None, ""):
            request["duration"] = body["duration"]
        try:
            fault = ActiveFault.from_json(self.controls[server].call("POST", "/faults", request))
        except ControlRefused as exc:
            return {"error": exc.reason}, 400
        except ControlError as exc:
            return {"error": f"sink {server}: {exc}"}, 502
        self.seen[server, fault.id] = fault
        log.info("maildrill: fault %s started on %s from the Failover tab", fault.id, server)
        return {"id": fault.id, "state": fault.state}, 200

    def start_dns(self, client: ControlClient, body: dict[str, Any]) -> tuple[dict[str, Any], int]:
        """A DNS fault now: checked as a scheduled one is, then started by the DNS server."""
        try:
            request = dns_live.command(self._dns_spec(), body, **self._dns_rules())
        except ValueError as exc:
            return {"error": str(exc)}, 400
        try:
            fault = ActiveFault.from_json(client.call("POST", "/faults", request))
        except ControlRefused as exc:
            return {"error": f"{body.get('kind')} on dns: {exc.reason}"}, 400
        except ControlError as exc:
            return {"error": f"DNS server: {exc}"}, 502
        self.seen[DNS_TARGET, fault.id] = fault
        log.info("maildrill: DNS fault %s started from the Failover tab", fault.id)
        return {"id": fault.id, "state": fault.state}, 200

    def stop(self, server: str, fault_id: str) -> tuple[dict[str, Any], int]:
        clients = self._clients()
        if server not in clients:
            return {"error": f"{server!r} is no local sink"}, 400
        try:
            if (why := state.stop_refusal(clients[server].fault(fault_id))) is not None:
                return {"error": why}, 409
            fault = clients[server].stop_fault(fault_id)
        except ControlRefused as exc:
            return {"error": exc.reason}, 404 if exc.status == 404 else 400
        except ControlError as exc:
            return {"error": f"sink {server}: {exc}"}, 502
        self.seen[server, fault.id] = fault
        return {"id": fault.id, "state": fault.state}, 200

    def table(self) -> list[dict[str, Any]]:
        """The rows of Locust's own Failover tab."""
        live = live_of(self.environment)
        rows = state.servers(live, self.rates, time.time(), list(self.controls))
        return [
            {
                "name": r["name"],
                "circuit": r["circuit"],
                "accepted_per_s": r["accepted_per_s"],
                "failed_per_s": r["failed_per_s"],
                "last_code": "" if r["last_code"] is None else r["last_code"],
                "console": "/failover",
            }
            for r in rows
        ]


def install(environment: Environment) -> FailoverTab | None:
    """init event: the routes and Locust's tab, where a web UI runs (not on a worker)."""
    web_ui = environment.web_ui
    if web_ui is None:
        return None
    from flask import Response, jsonify, request

    options = environment.parsed_options
    token = os.environ.get(TOKEN_ENV, "")
    text = getattr(options, "sink_controls", "") or ""
    dns_port = getattr(options, "dns_control", 0) or 0
    if not 0 <= dns_port < 65536:
        raise SystemExit(f"maildrill: --dns-control {dns_port}: expected a port")
    dns = ControlClient.on_port(dns_port, token, timeout=2.0) if dns_port and token else None
    tab = FailoverTab(environment, controls_of(text, token) if token else {}, dns)
    if (text or dns_port) and not token:
        log.warning("maildrill: --sink-controls or --dns-control without $%s: no fault "
                    "buttons", TOKEN_ENV)  # fmt: skip
    page = files("loadtest.failover_tab").joinpath("failover.html").read_text()
    app = web_ui.app
    if app is None:
        return None

    def failover_page() -> Any:
        return Response(page, mimetype="text/html")

    def failover_state() -> Any:
        return jsonify(tab.snapshot())

    def failover_start() -> Any:
        body, status = tab.start(request.get_json(silent=True))
        return jsonify(body), status

    def failover_stop(server: str, fault_id: str) -> Any:
        body, status = tab.stop(server, fault_id)
        return jsonify(body), status

    app.add_url_rule("/failover", "failover_page", failover_page)
    app.add_url_rule("/failover/state", "failover_state", failover_state)
    app.add_url_rule("/failover/faults", "failover_start", failover_start, methods=["POST"])
    app.add_url_rule("/failover/faults/<server>/<fault_id>", "failover_stop", failover_stop,
                     methods=["DELETE"])  # fmt: skip

    structure = [
        {"key": "name", "title": "Server"},
        {"key": "circuit", "title": "Circuit"},
        {"key": "accepted_per_s", "title": "Accepted/s"},
        {"key": "failed_per_s", "title": "Failed/s"},
        {"key": "last_code", "title": "Last reply"},
        {"key": "console", "title": "Faults and timeline"},
    ]
    web_ui.template_args["extended_tabs"] = [{"title": "Failover", "key": TAB}]
    web_ui.template_args["extended_tables"] = [{"key": TAB, "structure": structure}]

    def with_failover_rows(response: Any) -> Any:
        if request.path != "/stats/requests" or response.status_code != 200:
            return response
        data = response.get_json(silent=True)
        if isinstance(data, dict):
            data["extended_stats"] = [{"key": TAB, "data": tab.table()}]
            response.set_data(json.dumps(data))
        return response

    app.after_request(with_failover_rows)
    return tab
