"""Every use of aiosmtpd's private API (and of asyncio's), in one place, for one tested range.

The sink's protocol (`sinks.protocol.SinkSMTP`) changes how aiosmtpd's SMTP state machine
reads DATA, times out idle clients, parses paths and sets up a connection. aiosmtpd has no
public hooks for these, so it overrides and reads names aiosmtpd keeps private, which can
change in any release. They are all here, each under a name of ours with the reason it is
needed, and the installed aiosmtpd is checked at import against the range the tests cover
(`TESTED`, pinned the same in pyproject.toml): an untested aiosmtpd is one clear line at
start-up, not a sink that misbehaves under load. tests/unit/test_aiosmtpd_compat.py holds the
rest of `sinks/` to these names.

To support a new aiosmtpd: run the sink tests against it, adapt what fails here, and move
`TESTED` and the pin in pyproject.toml together.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Iterator
from types import MethodType
from typing import Any, AnyStr, TypeAlias

import aiosmtpd
import aiosmtpd.smtp
from aiosmtpd.smtp import SMTP, Session, _Missing

# The aiosmtpd versions the tests cover: at least the first, below the second.
TESTED = ((1, 4, 6), (1, 5))
REQUIREMENT = "aiosmtpd>=1.4.6,<1.5"


class UnsupportedAiosmtpd(ImportError):
    """The installed aiosmtpd is outside the tested range; its message is one line."""


def check_version(version: str) -> None:
    """Raise UnsupportedAiosmtpd unless `version` is in the tested range.

    Only the leading release numbers count ("1.4.6.post1" is 1.4.6); text that has none
    is outside the range.
    """
    match = re.match(r"\d+(?:\.\d+)*", version.strip())
    release = tuple(int(n) for n in match.group().split(".")) if match else ()
    low, high = TESTED
    if not (release and low <= release < high):
        raise UnsupportedAiosmtpd(
            f"maildrill's sinks need {REQUIREMENT} (the versions their tests cover), "
            f"found aiosmtpd {version}: pip install '{REQUIREMENT}'"
        )


check_version(aiosmtpd.__version__)

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO}
_sanitized_log = aiosmtpd.smtp.sanitized_log


def sanitized_log_if_enabled(func: Any, msg: Any, *args: Any, **kwargs: Any) -> None:
    """aiosmtpd's `sanitized_log`, skipped when the logger drops the record anyway.

    aiosmtpd logs every command line twice (at debug and info, its module global
    `sanitized_log`), and scrubs AUTH secrets from the arguments with a regex before the
    logger is asked whether it wants them: a few percent of a loaded sink's CPU for two
    records a sink's logging (warnings and up) never keeps. A logger that takes them still
    gets them, scrubbed as before."""
    logger = getattr(func, "__self__", None)
    level = _LEVELS.get(getattr(func, "__name__", ""))
    if isinstance(logger, logging.Logger) and level is not None and not logger.isEnabledFor(level):
        return
    _sanitized_log(func, msg, *args, **kwargs)


aiosmtpd.smtp.sanitized_log = sanitized_log_if_enabled
_aiosmtpd_log = aiosmtpd.smtp.log

# The type of aiosmtpd's public MISSING (what challenge_auth returns when there is no
# answer): aiosmtpd names it privately, and an override of challenge_auth must name it.
Missing: TypeAlias = _Missing


@contextlib.contextmanager
def reader_limit(reader: asyncio.StreamReader, limit: int) -> Iterator[None]:
    """The reader's buffer limit set to `limit` for a while, then set back.

    asyncio's StreamReader takes its limit only at creation; DATA is read in larger pieces
    than the command lines the limit guards, so it is raised for the message and restored.
    """
    saved = reader._limit  # type: ignore[attr-defined]
    reader._limit = limit  # type: ignore[attr-defined]
    try:
        yield
    finally:
        reader._limit = saved  # type: ignore[attr-defined]


class QuietSession(Session):
    """aiosmtpd 1.4 sets its deprecated `login_data` itself after AUTH and warns each time.

    The same property without the warning, over the attribute aiosmtpd keeps it in.
    """

    @property
    def login_data(self) -> Any:
        return self._login_data

    @login_data.setter
    def login_data(self, value: Any) -> None:
        self._login_data = value


class CompatSMTP(SMTP):
    """aiosmtpd's SMTP with its private hooks and state under public names of ours.

    Override the public name (`serve_client`, `reset_idle_timer`, `parse_path`) and call
    `super()` for aiosmtpd's behaviour; read the state through the properties below.
    """

    # -- hooks aiosmtpd calls by private names ------------------------------------------

    async def _handle_client(self) -> None:
        # aiosmtpd's coroutine for one connection, banner first: the only place to act
        # before the banner goes out (hang, busy, too many connections from one address).
        await self.serve_client()

    async def serve_client(self) -> None:
        """The session: banner, then commands until the client or the server ends it."""
        await super()._handle_client()

    async def push(self, status: AnyStr) -> None:
        """aiosmtpd's push (the reply and CRLF in one write, a debug record, a drain), with
        the drain asked only when it could wait or fail: when the transport holds bytes
        back (a client that does not read: the flow control a drain is for) or is closing.
        Otherwise it would return at once; skipping it, and the record a sink's logging
        drops, saves two coroutine layers on each of the four replies of every message. A
        logger that keeps debug records gets aiosmtpd's own push, record and all."""
        if _aiosmtpd_log.isEnabledFor(logging.DEBUG):
            await super().push(status)
            return
        if isinstance(status, str):
            response = status.encode("utf-8" if self.enable_SMTPUTF8 else "ascii")
        else:
            response = status
        self._writer.write(response + b"\r\n")
        transport: asyncio.WriteTransport | None = self.transport  # type: ignore[assignment]
        if transport is None or transport.is_closing() or transport.get_write_buffer_size():
            await self._writer.drain()

    def _reset_timeout(self, duration: float | None = None) -> None:
        # aiosmtpd calls it at every command line to restart the idle timer; a sink moves
        # a deadline instead (see SinkSMTP.reset_idle_timer).
        self.reset_idle_timer(duration)

    def reset_idle_timer(self, duration: float | None = None) -> None:
        """Restart the idle timer: aiosmtpd cancels its timer and schedules a new one."""
        super()._reset_timeout(duration)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        # aiosmtpd parses every MAIL and RCPT path here (with the RFC 5322 header parser).
        return self.parse_path(arg)

    def parse_path(self, arg: str) -> tuple[str | None, str | None]:
        """(address, parameters) of a MAIL/RCPT argument, (None, None) when malformed."""
        return super()._getaddr(arg)

    def _create_session(self) -> Session:
        # aiosmtpd makes each connection's Session here; ours does not warn at AUTH.
        return QuietSession(self.loop)

    # -- state aiosmtpd keeps under private names -----------------------------------------

    @property
    def reader(self) -> asyncio.StreamReader:
        """The connection's reader: DATA and AUTH answers are read from it directly."""
        reader: asyncio.StreamReader = self._reader
        return reader

    @property
    def idle_timeout_s(self) -> float:
        """The `timeout` given to SMTP: how long a client may say nothing."""
        return float(self._timeout_duration)

    @property
    def idle_timer(self) -> asyncio.TimerHandle | None:
        """The pending idle timer, which aiosmtpd cancels when the connection is lost."""
        return self._timeout_handle

    @idle_timer.setter
    def idle_timer(self, handle: asyncio.TimerHandle) -> None:
        self._timeout_handle = handle

    def idle_timeout_expired(self) -> None:
        """aiosmtpd's end of an idle client: a log line and the transport closed."""
        self._timeout_cb()  # type: ignore[no-untyped-call]

    @property
    def tls_active(self) -> bool:
        """Whether STARTTLS has been done on this connection."""
        return self._tls_protocol is not None

    def end_transaction(self) -> None:
        """After DATA (accepted or not): a new envelope for the next MAIL."""
        self._set_post_data_state()  # type: ignore[no-untyped-call]

    def require_auth(self, required: bool) -> None:
        """Set what SMTP(auth_required=...) sets, without its warning about plain text.

        aiosmtpd warns when AUTH is required without TLS; a drill may ask for just that,
        and under `-W error` the warning would stop the sink.
        """
        self._auth_required = required

    def copy_setup(self, template: CompatSMTP) -> None:
        """Set up as SMTP.__init__ would, copying what it derived for `template`.

        SMTP.__init__ introspects the class and the handler (inspect.getmembers, dir,
        inspect.signature) and formats a log line, on every connection. All of it depends
        only on the class, the handler and the settings, so a sink does it once (its
        template) and each connection copies it: the instance's attributes, a new stream
        (as StreamReaderProtocol.__init__ makes it, with aiosmtpd's callback), and the
        command and AUTH methods aiosmtpd found, bound again to this connection.
        """
        self.__dict__.update(template.__dict__)
        loop = template.loop
        asyncio.StreamReaderProtocol.__init__(
            self,
            asyncio.StreamReader(loop=loop, limit=self.line_length_limit),
            client_connected_cb=self._cb_client_connected,
            loop=loop,
        )
        self._smtp_methods = {
            name: self._rebound(method) for name, method in template._smtp_methods.items()
        }
        self._auth_methods = {
            name: auth._replace(method=self._rebound(auth.method)) if auth.is_builtin else auth
            for name, auth in template._auth_methods.items()
        }

    def _rebound(self, method: Any) -> Any:
        """A method of the template, bound to this connection instead."""
        return MethodType(method.__func__, self)
