"""A hung server: it stops answering, as a deadlocked or disk-stalled MTA does.

`scope: all` (the default) freezes the whole server where it stands: a session already open
gets no reply to its next command (RSET, NOOP and QUIT included), a message whose final dot
comes is neither committed nor acknowledged, a new connection gets no banner. The effect
only says FREEZE, at every reply (`Stage.REPLY`) and before the commit (`Stage.DOT`); the
host holds each stage that hears it until the fault clears (sinks.host).

When it clears, frozen sessions carry on where they stood: the held reply goes out and a
message whose dot came is committed then (journaled as received) and acknowledged. That is
what a stalled MTA does when its disk, its lock or its network comes back: the process
resumes, unaware it stalled. A sender that gave up meanwhile has closed its connection,
and its session ended with it: a message is never committed for a client that left, so a
freeze alone makes no receipt the sender did not hear of (no phantom, and no duplicate when
it retries elsewhere). Only a client still waiting at the clear gets its late reply, as it
would from the real server. Nothing the server says while frozen, not even the 421 of its
own idle timeout: the idle timer then closes the session in silence. (A message committed
just before the onset keeps its receipt while its 250 waits out the freeze, the gap an
`ack` delay opens: a sender that gives up then makes the phantom a real server would.)

On a backup MX the commit is the queue: a frozen one queues nothing, while its queue
runner, a part of its own as Postfix's qmgr is, goes on forwarding what it already holds.
With `processes: N` each worker freezes its own sessions (the control API tells them all).

`scope: new` is a listener that no longer greets while its workers live (an accept loop
stuck, a backlog filling): TCP is accepted and no banner ever comes, even after the clear,
while sessions already open carry on as if nothing happened.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from sinks.effects.base import Action, Context, Decision, Effect, Params, Stage

Scope = Literal["all", "new"]


class HangParams(Params):
    scope: Scope = Field(
        default="all",
        description="all: every session freezes (no reply, no commit, no banner); "
        "new: new connections only",
    )


class Hang(Effect):
    kind = "hang"
    Params = HangParams
    summary = "stop answering: no reply, no commit, no banner (`scope: new`: no banner only)"

    def __init__(self, params: HangParams) -> None:
        super().__init__(params)
        self.scope = params.scope

    @property
    def stages(self) -> frozenset[Stage]:
        if self.scope == "new":
            return frozenset({Stage.CONNECT})
        return frozenset({Stage.DOT, Stage.REPLY})

    def decide(self, stage: Stage, ctx: Context) -> Decision | None:
        return Action.HANG if self.scope == "new" else Action.FREEZE
