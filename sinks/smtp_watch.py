"""Following an SMTP session from the outside, as a relay sees it: no I/O, no clocks.

A proxy feeds each side's bytes in as they come (`client`, `server`) and gets them back
cut into pieces, each ending where something happened: a command line is complete, a
message's end (the final dot, or the last BDAT chunk) has gone by, a reply is complete.
Replies are matched to what they answer in order (commands, pipelined or not, and message
ends), which is how the watch knows a 354 opens DATA, a 220 after STARTTLS makes the
rest opaque, and which reply is the verdict on a message.

What it keeps is bounded: a line (MAX_LINE), a message's head (HEAD_LIMIT), and what waits
for a reply. That last one grows with every pipelined command, so `ready` tells the relay
when to stop reading the client until the server has answered: after MAX_UNANSWERED
commands, and after a DATA or STARTTLS, whose reply decides how the next bytes are read.
A server answers every command it has whole without waiting for more, so the pause always
ends; a client that pipelines is held back, as the server itself would hold it back.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

from sinks.effects import Stage

# A command line longer than this without its end is passed on as it is (and not read).
MAX_LINE = 4096
# Headers are searched for X-Maildrill-Id in a message's first this many bytes.
HEAD_LIMIT = 64 * 1024
# Commands sent and not answered yet, at most: past this, `ready` is false (100 RCPTs of a
# pipelined message, RFC 5321's minimum, go through in one turn).
MAX_UNANSWERED = 1000
# Commands whose reply decides how the client's next bytes are read (content, TLS).
_TURNS = frozenset({"DATA", "STARTTLS"})
_TERMINATOR = b"\r\n.\r\n"
_MSG_ID = re.compile(rb"^x-maildrill-id:[ \t]*([^\r\n]*)", re.IGNORECASE | re.MULTILINE)
_STAGES = {
    "HELO": Stage.EHLO,
    "EHLO": Stage.EHLO,
    "LHLO": Stage.EHLO,
    "MAIL": Stage.MAIL,
    "RCPT": Stage.RCPT,
    "DATA": Stage.DATA,
    "BDAT": Stage.DATA,
}


@dataclass(frozen=True, slots=True)
class Command:
    """A client line: a command, or a line of an AUTH exchange (`stage` None then)."""

    verb: str
    stage: Stage | None


@dataclass(slots=True)
class Message:
    """A message as it went by: its id header, its size on the wire, its fate."""

    number: int  # 1, 2, ... in the session
    msg_id: str = ""
    size: int = 0  # content bytes as sent (dot-stuffed, without the final '.CRLF')
    cut: str = ""  # set by the relay when a fault ends it (drop, reset)


@dataclass(frozen=True, slots=True)
class ServerReply:
    code: int  # 0 when the last line does not start with three digits
    answers: Command | Message | None  # None: nothing was waiting (e.g. a 421 on timeout)


CONNECT = Command("", Stage.CONNECT)  # what the greeting answers
ClientPiece = tuple[bytes, Command | Message | None]
ServerPiece = tuple[bytes, ServerReply | None]


class SmtpWatch:
    """Both directions of one session; `opaque` once STARTTLS has succeeded."""

    def __init__(self) -> None:
        self.mode = "command"  # command, data, bdat, opaque
        self.pending: deque[Command | Message] = deque([CONNECT])
        self.messages = 0
        self._line = b""  # an unfinished client command line
        self._reply = b""  # an unfinished server reply line
        self._message: Message | None = None  # the one being sent
        self._tail = b""  # the last bytes of DATA content, to find a terminator across reads
        self._head = b""  # the first bytes of the content, for its headers
        self._chunk_left = 0  # BDAT bytes still to come
        self._last_chunk = False
        self._turns = 0  # DATA and STARTTLS commands not answered yet

    @property
    def opaque(self) -> bool:
        return self.mode == "opaque"

    @property
    def ready(self) -> bool:
        """Whether the client's next bytes may be read before the server answers more.
        Only between commands: a BDAT chunk is read on (its reply comes after it)."""
        if self.mode != "command":
            return True
        return not self._turns and len(self.pending) < MAX_UNANSWERED

    # -- client to server -----------------------------------------------------------------

    def client(self, data: bytes) -> list[ClientPiece]:
        """`data` in pieces; a piece's event happened at its last byte."""
        return list(self.pieces(data))

    def pieces(self, data: bytes) -> Iterator[ClientPiece]:
        """`client`, one piece at a time: each line is read only when the next piece is
        asked for, so a relay can stop between two (see `ready`) and let replies in."""
        pos, size = 0, len(data)
        piece: ClientPiece | None
        while pos < size:
            if self.mode == "opaque":
                yield data[pos:], None
                return
            if self.mode == "data":
                piece, pos = self._data(data, pos)
            elif self.mode == "bdat":
                piece, pos = self._chunk(data, pos)
            else:
                piece, pos = self._command_line(data, pos)
            if piece is not None:
                yield piece

    def _command_line(self, data: bytes, pos: int) -> tuple[ClientPiece | None, int]:
        end = data.find(b"\n", pos)
        if end < 0:
            self._line += data[pos:]
            if len(self._line) > MAX_LINE:  # not SMTP, or not a line we could act on
                line, self._line = self._line, b""
                return (line, None), len(data)
            return None, len(data)
        line = self._line + data[pos : end + 1]
        self._line = b""
        return (line, self._command(line)), end + 1

    def _command(self, line: bytes) -> Command | Message:
        words = line.split()
        verb = words[0].decode("ascii", "replace").upper() if words else ""
        command = Command(verb, _STAGES.get(verb))
        if verb != "BDAT":
            self.pending.append(command)
            if verb in _TURNS:
                self._turns += 1
            return command
        # BDAT n [LAST]: n bytes follow at once; the last chunk's reply is the verdict.
        try:
            self._chunk_left = int(words[1])
        except (IndexError, ValueError):
            self.pending.append(command)  # refused by the server; no chunk follows
            return command
        self._last_chunk = len(words) > 2 and words[2].upper() == b"LAST"
        if self._message is None:
            self._start_message()
        assert self._message is not None
        self.pending.append(self._message if self._last_chunk else command)
        self.mode = "bdat"
        if self._chunk_left == 0:
            return self._end_chunk() or command
        return command

    def _chunk(self, data: bytes, pos: int) -> tuple[ClientPiece, int]:
        take = min(self._chunk_left, len(data) - pos)
        piece = data[pos : pos + take]
        self._content(piece)
        self._chunk_left -= take
        return (piece, self._end_chunk() if self._chunk_left == 0 else None), pos + take

    def _end_chunk(self) -> Message | None:
        self.mode = "command"
        if not self._last_chunk:
            return None
        return self._end_message(trailer=0)

    def _data(self, data: bytes, pos: int) -> tuple[ClientPiece, int]:
        window = self._tail + data[pos:]
        found = window.find(_TERMINATOR)
        if found < 0:
            piece = data[pos:]
            self._content(piece)
            self._tail = window[-4:]
            return (piece, None), len(data)
        end = pos + found + len(_TERMINATOR) - len(self._tail)
        piece = data[pos:end]
        self._content(piece)
        self.mode = "command"
        return (piece, self._end_message(trailer=3)), end

    def _start_message(self) -> None:
        self.messages += 1
        self._message = Message(self.messages)
        self._head = b""

    def _content(self, piece: bytes) -> None:
        assert self._message is not None
        self._message.size += len(piece)
        if len(self._head) < HEAD_LIMIT and b"\r\n\r\n" not in self._head:
            self._head += piece[: HEAD_LIMIT - len(self._head)]

    def _end_message(self, trailer: int) -> Message:
        message = self._message
        assert message is not None
        message.size -= trailer
        head = self._head.split(b"\r\n\r\n", 1)[0]
        found = _MSG_ID.search(head)
        if found:
            message.msg_id = found.group(1).strip().decode("utf-8", "replace")
        if trailer:  # DATA: the dot ends it, its reply is the verdict
            self.pending.append(message)
        self._message = None
        return message

    # -- server to client -----------------------------------------------------------------

    def server(self, data: bytes) -> list[ServerPiece]:
        """`data` in pieces; a piece with a ServerReply ends with that reply's last line."""
        out: list[ServerPiece] = []
        pos, size = 0, len(data)
        while pos < size:
            if self.mode == "opaque":
                out.append((data[pos:], None))
                break
            end = data.find(b"\n", pos)
            if end < 0:
                self._reply += data[pos:]
                if len(self._reply) > MAX_LINE:
                    out.append((self._reply, None))
                    self._reply = b""
                break
            line = self._reply + data[pos : end + 1]
            self._reply = b""
            pos = end + 1
            if line[3:4] == b"-":  # a continuation line: the reply is not complete yet
                out.append((line, None))
                continue
            out.append((line, self._reply_to(line)))
        return out

    def _reply_to(self, line: bytes) -> ServerReply:
        code = int(line[:3]) if line[:3].isdigit() else 0
        answers = self.pending.popleft() if self.pending else None
        if isinstance(answers, Command):
            if answers.verb in _TURNS:
                self._turns -= 1
            if answers.verb == "DATA" and code == 354:
                self.mode = "data"
                self._tail = b"\r\n"  # content starts at a line start: '.CRLF' ends it at once
                self._start_message()
            elif answers.verb == "STARTTLS" and code == 220:
                self.mode = "opaque"
        return ServerReply(code, answers)
