"""by_address on the bundled mx-backup's servers: attempts at mx1.shop.test and
mx2.shop.test credited to the sinks at their addresses (primary at .11, secondary at .12,
one port), so a fault journaled by `primary` is measured against what reached it."""

from __future__ import annotations

import pandas as pd
import yaml

from loadtest.analysis import by_address
from loadtest.scenario import parse_scenario
from tests.helpers import REPO

SCENARIO = parse_scenario(yaml.safe_load((REPO / "scenarios" / "mx-backup.yaml").read_text()))
SERVERS = SCENARIO.servers


def test_attempts_at_a_name_are_credited_to_the_sink_at_their_address():
    attempts = pd.DataFrame({
        "server": ["mx1.shop.test", "mx1.shop.test", "mx2.shop.test", "mx1.shop.test"],
        "addr": ["127.0.0.11", "", "127.0.0.12", "127.0.0.99"],
    })  # fmt: skip
    credited = by_address.credit_sinks(attempts, SERVERS)
    # no address (a failed lookup) and an address no sink listens at: left as they were
    assert list(credited["server"]) == ["primary", "mx1.shop.test", "secondary", "mx1.shop.test"]
    assert attempts.at[0, "server"] == "mx1.shop.test"  # the journal's frame is not changed
    # mx2's every attempt reached a sink: no window is inferred for it; mx1's did not
    seen, kept = by_address.servers_kept(attempts, credited)
    assert seen - kept == {"mx2.shop.test"}


def test_attempts_at_fixed_addresses_are_left_alone():
    attempts = pd.DataFrame({"server": ["primary"], "addr": [""]})
    assert by_address.credit_sinks(attempts, SERVERS) is attempts
    seen, kept = by_address.servers_kept(attempts, attempts)
    assert seen - kept == set()
