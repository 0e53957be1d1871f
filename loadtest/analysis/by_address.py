"""Attempts at a server named by DNS, credited to the local sink at the address they used.

A server named by DNS (`{mx: shop.test}`, `host: smtp.shop.test`) is not a sink: its name
is looked up as mail is sent, and its attempts go to whichever address the answer gives
(the attempts journal's `addr`). When that address and the server's port are a local
sink's, the fault that sink journals (`down` on `primary`) is a fault of what those
attempts reached: the failover analysis measures the sink's window against the attempts
credited to it (detection at the sink, failover to another, failback to it), and the
server named by DNS needs no window inferred from its failed attempts (it would be a
second, open-ended copy of the sink's).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from loadtest.server_spec import ServerSpec


def credit_sinks(attempts: pd.DataFrame, servers: Sequence[ServerSpec]) -> pd.DataFrame:
    """`attempts` with `server` the local sink listening at (addr, the server's port) for
    each attempt that used an address; the others as they are."""
    sinks = {(s.host, s.port): s.name for s in servers if s.local}
    port_of = {s.name: s.port for s in servers if not s.local}
    # Without a server named by DNS no key can match: a million attempts are not walked.
    if not sinks or not port_of or not len(attempts) or "addr" not in attempts:
        return attempts
    addrs = attempts["addr"].fillna("").astype(str)
    keys = zip(addrs, attempts["server"].map(port_of), strict=True)
    sink = pd.Series([sinks.get(key) for key in keys], index=attempts.index, dtype=object)
    if sink.isna().all():
        return attempts
    return attempts.assign(server=sink.fillna(attempts["server"].astype(object)))


def servers_kept(attempts: pd.DataFrame, credited: pd.DataFrame) -> tuple[set[str], set[str]]:
    """The servers these attempts name, and those of them with an attempt not credited to a
    local sink: of a whole run (any shares of its messages put together), the first less
    the second are the servers that only reached sinks."""
    seen = {str(s) for s in attempts["server"].unique()}
    if credited is attempts or not len(attempts):
        return seen, seen
    servers = attempts["server"].astype(str)
    kept = credited["server"].astype(str) == servers
    return seen, {str(s) for s in servers[kept].unique()}
