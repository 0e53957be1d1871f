"""The DKIM keys a run makes, made for the check of the scenario's own zones.

`maildrill run` makes a key pair per (selector, domain) a Postfix instance signs with
(`postfix.dkim: {selector, domain, publish}`, `loadtest.dkim_keys`), and publishes its
public half in the run's zone: the key itself (`publish: true`), none (`false`: the zone's
own record, if any, stands) or another key's (`wrong`). The zones served for `check --dns`
must hold the same, or every such selector would look unpublished; and the key each
instance signs with is then known, so a selector published with another key is found.
The keys are made the run's way, by the run's own code; only the check's handling of a
name no zone holds differs (below).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from loadtest import dkim_keys
from loadtest.server_spec import ServerSpec
from maildrill.dns.zone import Zone


@dataclass
class RunKeys:
    txt: dict[str, str] = field(default_factory=dict)  # owner name -> TXT value to publish
    signing: dict[tuple[str, str], bytes] = field(default_factory=dict)  # -> SPKI DER


def run_keys(servers: Sequence[ServerSpec]) -> RunKeys:
    """A key per (selector, domain) named in a server's `postfix.dkim`, as the run makes
    them: the records it would publish, and the public key each selector signs with."""
    keys = dkim_keys.make_keys(dkim_keys.signers(servers).values())
    return RunKeys(
        txt=dkim_keys.published_records(keys.values()),
        signing={ident: base64.b64decode(k.public_b64) for ident, k in keys.items()},
    )


def with_txt(zones: Sequence[Zone], records: Mapping[str, str]) -> tuple[Zone, ...]:
    """`zones` with each TXT record added in the zone that holds its name. A name in none
    of them is left out, where the run refuses it at set-up: the check goes on, and finds
    the selector unpublished, as a provider would."""
    held = {n: v for n, v in records.items() if dkim_keys.zone_of(zones, n) is not None}
    return dkim_keys.with_txt(zones, held)
