"""The sink's side of the checks: in worker threads, bounded in number and in time.

pyspf and dkimpy block on their lookups; run on the event loop they would stall every
session of the sink for each message's DNS round trips. Here each message's checks run in
a thread of a pool of `concurrency` (more wait their turn), and the sink waits at most
`deadline_s` for them: past it the verdicts are temperror and the message goes on (the
thread finishes on its own, each of its lookups bounded by `lookup_timeout_s`)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from sinks.authcheck.dmarc import from_domain
from sinks.authcheck.enforce import refusal
from sinks.authcheck.lookup import Lookup, ServerLookup
from sinks.authcheck.verdicts import AuthVerdicts
from sinks.authcheck.verify import unverified, verify_message
from sinks.config import VerifyConfig
from sinks.replies import Reply


class MessageChecker:
    def __init__(self, config: VerifyConfig, lookup: Lookup | None = None) -> None:
        self.config = config
        host, port = config.server
        self.lookup = lookup or ServerLookup(host, port, timeout=config.lookup_timeout_s)
        self._pool = ThreadPoolExecutor(config.concurrency, thread_name_prefix="authcheck")

    async def check(
        self, *, peer_ip: str, helo: str, mail_from: str, message: bytes
    ) -> tuple[AuthVerdicts, Reply | None]:
        """The verdicts, and the reply the configured provider gives them (None: accept)."""
        loop = asyncio.get_running_loop()
        job = loop.run_in_executor(
            self._pool,
            lambda: verify_message(
                self.lookup,
                peer_ip=peer_ip,
                helo=helo,
                mail_from=mail_from,
                message=message,
                spf_timeout=self.config.deadline_s,
            ),
        )
        try:
            result = await asyncio.wait_for(job, self.config.deadline_s)
        except TimeoutError:
            result = unverified(f"checks took longer than {self.config.deadline_s:g}s")
        domain = from_domain(message) or mail_from.rpartition("@")[2]
        return result, refusal(self.config.enforce, result, peer=peer_ip, domain=domain)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
