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
- `python -m maildrill.dns ZONEFILE...`: serves master files on 127.0.0.1, port 0 (or
  `--port`), prints one ready line `{"dns": {"host": H, "port": P}}`, stops on SIGTERM.
"""
