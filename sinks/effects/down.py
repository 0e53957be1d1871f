"""The server is gone: the listener closes (connection refused) and open sessions are cut."""

from __future__ import annotations

from sinks.effects.base import Effect, FaultHost


class Down(Effect):
    kind = "down"
    summary = "close the listener (connection refused) and cut open sessions"

    async def start(self, host: FaultHost) -> None:
        await host.close_listener()

    async def stop(self, host: FaultHost) -> None:
        await host.open_listener()
