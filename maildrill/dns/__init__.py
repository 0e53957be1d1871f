"""The run's DNS: zones from the scenario, an authoritative server for them on loopback,
and the resolver the sinks and `maildrill check` ask it with. Imports neither half.

The API (stable names; each module's docstring says more):

- `maildrill.dns.zone`: `parse_zones(data, *, allow_remote=False) -> tuple[Zone, ...]`
  reads a scenario's `dns: zones:` mapping (raises `ZoneError`, a ValueError whose one
  line names the zone, the name and the record). `Zone(origin, ttl, records)`;
  `Record(name, rtype, ttl, rdata)`; `Zone.to_dns()` (a `dns.zone.Zone` with an SOA and
  NS made up at the apex), `Zone.to_text()` (its master file). `reverse_name(address)`,
  `is_reserved_zone(origin)`, `RECORD_TYPES`.
- `maildrill.dns.server`: `Authority(zones: Iterable[dns.zone.Zone])` answers
  (`respond(query)`, `handle(wire, max_size=...)`), no sockets; `DnsServer(authority,
  host="127.0.0.1", port=0)`: `await start() -> (host, port)` (UDP and TCP on one
  port), `await close()`, an async context manager.
- `maildrill.dns.resolver`: `Resolver(host, port, timeout=2.0)`;
  `lookup(name, rtype) -> Lookup` (blocking); shortcuts `a`, `aaaa`, `mx`, `txt`,
  `ptr(address)`. `Lookup(name, rtype, status, records, ttl, detail)` with `status` a
  `Status`: OK, NXDOMAIN, NODATA or TEMPERROR (timeout,
  SERVFAIL, REFUSED: `detail` says which); TXT records are the strings joined; MX
  records `"PREF HOST"`, `Lookup.mx() -> tuple[MxRecord(preference, host), ...]`.
- `maildrill.dns.files`: `write_zones(zones, directory) -> list[Path]` (one
  `ORIGIN.zone` master file each), `load_zones(paths) -> Authority`.
- `maildrill.dns.faults`: the DNS fault kinds, one `DnsFault` subclass each (`KINDS`:
  servfail, nxdomain, timeout, latency, records), `build(kind, params)`.
- `maildrill.dns.board`: `FaultBoard(journal)` holds them by id on the server's clock
  (`add(kind, params, probability=, duration=, start_at=)`, `remove(id)`, `fault(id)`),
  journaling faults-dns.csv (`FaultRecord`, `sink: dns`).
- `maildrill.dns.control`: the control API (a sink's requests and token) on 127.0.0.1.
- `maildrill.dns.query_log`: `QueryLog(journal)`, dns-queries.csv (`DnsQueryRecord`).
- `maildrill.dns.journals`: `keep_journals(authority, directory)` attaches both.
- `python -m maildrill.dns ZONEFILE... [--journal-dir DIR] [--control-port P]`: serves
  master files on 127.0.0.1, port 0 (or `--port`), prints one ready line `{"dns": {"host":
  H, "port": P, "control_port": C}}` (and `token` when MAILDRILL_CONTROL_TOKEN gave none),
  stops on SIGTERM.
"""
