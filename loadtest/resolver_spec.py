"""The scenario's `resolver:`: a DNS resolver the user names, which the senders ask for the
servers named by DNS (`host: smtp.shop.test`, `mx: shop.test`) instead of the run's own DNS
server.

Why: a drill of a real setup follows the records the production senders see (a
health-checked record on a DNS service, the MX set of a real domain, the resolver the MTA
hosts use), not the scenario's `dns:` zones. That resolver may answer for real names and
its answers may be outside loopback, so the key needs `allow_remote: true`
(`scenario_checks.resolver_allowed`) and `maildrill run` asks for `--yes` as it does for
remote targets.

Written `resolver: HOST[:PORT]` or `resolver: {server: HOST[:PORT], timeout_ms: N}`. HOST
is an address, never a name: the resolver's own name would be asked of the system's
resolver, which nothing in a drill uses. Port 53 unless given; IPv6 in brackets when a port
follows (`[2001:db8::53]:5353`). Asked as the run's DNS server is (maildrill.dns.resolver):
UDP, TCP when the answer is truncated, no retry; each query (UDP, TCP, and each again for
a CNAME the answer leaves) waits up to `timeout_ms`, so a lookup may take a few times that
(a timeout is a temporary failure: the message is deferred, as Postfix defers it).
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any

from pydantic import AfterValidator, Field, model_validator

from loadtest.strict_model import StrictModel
from maildrill.dns.resolver import DEFAULT_TIMEOUT_S, Resolver
from maildrill.numbers import at_most

DEFAULT_PORT = 53
MAX_TIMEOUT_MS = 30_000

Address = tuple[str, int]


def parse_address(text: str) -> Address:
    """'192.0.2.53' -> ('192.0.2.53', 53); '192.0.2.53:5353', '[::1]:5353', '::1' too.
    ValueError (one line) for a name, a bad address or a port outside 1-65535."""
    text = text.strip()
    host, port = text, str(DEFAULT_PORT)
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"{text!r}: expected HOST[:PORT], IPv6 as [ADDRESS]:PORT")
        port = rest[1:] if rest else port
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if ":" in host or host.replace(".", "").isdigit():
            raise ValueError(
                f"{text!r}: not an address, expected HOST[:PORT] ([IPv6]:PORT)"
            ) from None
        raise ValueError(
            f"{text!r}: give the resolver's address, not a name: its name would be asked of "
            "the system's resolver"
        ) from None
    if not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r}: port {port!r} is not 1-65535")
    return host, int(port)


def _address_text(text: str) -> str:
    parse_address(text)
    return text.strip()


class ResolverSpec(StrictModel):
    server: Annotated[str, AfterValidator(_address_text)] = Field(
        description="HOST[:PORT] of the DNS resolver: an IP address (IPv6 as [ADDRESS]:PORT), "
        "port 53 by default"
    )
    timeout_ms: Annotated[int, at_most(MAX_TIMEOUT_MS, "ms")] = Field(
        default=int(DEFAULT_TIMEOUT_S * 1000),
        gt=0,
        description="each query (UDP, TCP when truncated, each CNAME left) waits this long; "
        "a lookup with no answer is a temporary failure (deferred, 4.4.3)",
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        """`resolver: HOST[:PORT]` is `resolver: {server: HOST[:PORT]}`."""
        if isinstance(data, str):
            return {"server": data}
        if not isinstance(data, dict | ResolverSpec):
            raise ValueError("expected HOST[:PORT] or {server: HOST[:PORT], timeout_ms: N}")
        return data

    @property
    def address(self) -> Address:
        return parse_address(self.server)

    @property
    def text(self) -> str:
        """HOST:PORT as a person reads it ([IPv6]:PORT)."""
        host, port = self.address
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def resolver(self) -> Resolver:
        """The client that asks it (UDP, TCP on truncation; never the system's resolver)."""
        host, port = self.address
        return Resolver(host, port, timeout=self.timeout_ms / 1000)
