"""`maildrill check --dns DOMAIN`: would each sending server's mail pass the providers'
checks after a failover? The domain's MX, SPF, DKIM and DMARC records and each server's
reverse DNS, as the run's DNS server (or a resolver the user names) answers them.

Split as `maildrill check` itself (loadtest.preflight) is:

- `senders`: who sends (the scenario's Postfix instances, or servers named on the command
  line): name, address, HELO name, DKIM selectors, the key each signs with when known.
- `probe` asks one DNS server and returns what it saw as plain data (`facts`); it never
  raises for the zone's trouble, it records it.
- `compare` is a pure function from those facts to `Finding`s (what would hurt
  deliverability after a failover: exit 1) and notes; its tests need no sockets.
- `render` only reads both: the side-by-side table, and JSON.
- `command` ties them to the command line: a run DNS server for the scenario's zones, or
  the resolver named.
"""
