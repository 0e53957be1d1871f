"""Campaign messages as an ESP sends them, deterministic from a seed and cheap to make.

The MIME skeleton, filler text and attachment bytes are built once per stream; making a
message costs one small RNG, its headers and a slice of filler to reach its drawn size.
Any process can build message k alone, which is what lets workers share a campaign.
"""

from __future__ import annotations

import base64
import hashlib
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import formatdate

from loadtest.addresses import AddressError, AddressPolicy, header_text
from maildrill.mailboxes import unknown_address

DEFAULT_DOMAINS: Mapping[str, float] = {
    "gmail.test": 0.45,
    "yahoo.test": 0.2,
    "outlook.test": 0.25,
    "example.com": 0.1,
}

_WORDS = (  # noqa: SIM905
    "spring sale ends tonight free shipping on every order members save more new arrivals "
    "limited stock your exclusive offer inside thanks for being with us see what is new "
    "picked for you this week only unsubscribe anytime manage your preferences"
).split()


@dataclass(frozen=True)
class StreamSpec:
    """One stream of a campaign (transactional, promotional, ...) and its mix."""

    name: str = "promotional"
    weight: float = 1.0
    sender: str = "news@example.com"
    subject: str = "Spring sale: {index}"
    size_median: int = 20_000  # bytes, whole message
    size_sigma: float = 0.5  # lognormal shape; 0 gives every message the median size
    size_min: int = 1_500
    size_max: int = 500_000
    recipients_min: int = 1
    recipients_max: int = 1
    domains: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_DOMAINS))
    attachment_share: float = 0.0  # share of messages with a PDF-like attachment
    attachment_size: int = 30_000  # bytes before base64
    # Share of recipients sent to a mailbox that does not exist (maildrill.mailboxes), drawn
    # from `unknown_addresses` such mailboxes per domain (few: the same ones come back).
    unknown_recipients: float = 0.0
    unknown_addresses: int = 1000


@dataclass(frozen=True, slots=True)
class Message:
    index: int
    msg_id: str  # X-Maildrill-Id
    stream: str
    sender: str
    recipients: tuple[str, ...]
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)


def _filler(seed: int, size: int) -> bytes:
    """Deterministic 7-bit text in lines of at most 76 characters, CRLF-terminated."""
    rng = random.Random(seed)
    lines: list[str] = []
    total = 0
    while total < size:
        words: list[str] = []
        length = 0
        while True:
            word = rng.choice(_WORDS)
            if length + len(word) + 1 > 76:
                break
            words.append(word)
            length += len(word) + 1
        line = " ".join(words)
        lines.append(line)
        total += len(line) + 2
    return ("\r\n".join(lines) + "\r\n").encode()


def _attachment(seed: int, size: int) -> bytes:
    raw = random.Random(seed).randbytes(size)
    encoded = base64.encodebytes(raw)  # 76-character lines
    return encoded.replace(b"\n", b"\r\n")


class _StreamTemplate:
    """The parts of a stream's messages that never change."""

    def __init__(self, spec: StreamSpec, seed: int) -> None:
        self.spec = spec
        self.domains = list(spec.domains)
        self.cum_weights = list(_cumulative(spec.domains.values()))
        self.boundary = hashlib.sha1(f"{seed}:{spec.name}".encode()).hexdigest()[:24]
        b = self.boundary
        self.text = _filler(seed, 600)
        self.filler = _filler(seed + 1, spec.size_max + 1000)
        self.attachment = (
            _attachment(seed + 2, spec.attachment_size) if spec.attachment_share > 0 else b""
        )
        self.head_mixed = (
            f"MIME-Version: 1.0\r\n"
            f'Content-Type: multipart/mixed; boundary="m{b}"\r\n\r\n'
            f"--m{b}\r\n"
            f'Content-Type: multipart/alternative; boundary="a{b}"\r\n\r\n'
        ).encode()
        self.head_alternative = (
            f'MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary="a{b}"\r\n\r\n'
        ).encode()
        self.text_part = (
            f"--a{b}\r\nContent-Type: text/plain; charset=us-ascii\r\n"
            f"Content-Transfer-Encoding: 7bit\r\n\r\n"
        ).encode() + self.text
        self.html_open = (
            f"--a{b}\r\nContent-Type: text/html; charset=us-ascii\r\n"
            f"Content-Transfer-Encoding: 7bit\r\n\r\n<html><body><p>\r\n"
        ).encode()
        self.html_close = f"</p></body></html>\r\n--a{b}--\r\n".encode()
        self.attachment_part = (
            f"--m{b}\r\nContent-Type: application/pdf; name=offer.pdf\r\n"
            f"Content-Disposition: attachment; filename=offer.pdf\r\n"
            f"Content-Transfer-Encoding: base64\r\n\r\n"
        ).encode() + self.attachment
        self.mixed_close = f"--m{b}--\r\n".encode()


def _cumulative(weights: Iterable[float]) -> list[float]:
    total = 0.0
    out = []
    for w in weights:
        total += float(w)
        out.append(total)
    return out


def check_stream(spec: StreamSpec, policy: AddressPolicy) -> None:
    """What a stream puts in the envelope and in headers: its sender and recipient domains
    reserved or allowed, its header values one line each. AddressError if not."""
    where = f"stream {spec.name!r}"
    header_text(spec.name, f"{where}: name")
    header_text(spec.subject, f"{where}: subject")
    policy.check(spec.sender, f"{where}: sender")
    for domain in spec.domains:
        if not policy.domain_allowed(domain):
            raise AddressError(
                f"{where}: recipient domain {domain!r} is not a reserved or allowed domain name"
            )


class MessageFactory:
    """Builds message k of a campaign; the same seed gives the same messages (Date aside).

    Every stream is checked here, whether or not a scenario validated it: the recipients
    are drawn from its domains, so none can be outside reserved or `allowed_domains`.
    """

    def __init__(
        self,
        streams: Sequence[StreamSpec],
        run_id: str,
        seed: int = 0,
        allowed_domains: Iterable[str] = (),
    ) -> None:
        if not streams:
            raise ValueError("a campaign needs at least one stream")
        policy = AddressPolicy(allowed_domains)
        for spec in streams:
            check_stream(spec, policy)
        self.run_id = header_text(run_id, "run id")
        self.seed = seed
        self.templates = [_StreamTemplate(s, seed * 7919 + i) for i, s in enumerate(streams)]
        self.stream_weights = _cumulative([s.weight for s in streams])
        self._date_second = -1
        self._date = ""

    def _date_header(self, now: float) -> str:
        second = int(now)
        if second != self._date_second:
            self._date_second = second
            self._date = formatdate(second, localtime=False)
        return self._date

    def _envelope(self, index: int) -> tuple[random.Random, _StreamTemplate, tuple[str, ...]]:
        """Message `index`'s generator (its next draws make the body), stream and
        recipients. The unknown recipients come from a generator of their own, so a share
        of 0 draws nothing and leaves every message as it was without the key."""
        rng = random.Random(self.seed * 1_000_003 + index)
        t = rng.choices(self.templates, cum_weights=self.stream_weights)[0]
        spec = t.spec
        n_rcpt = rng.randint(spec.recipients_min, spec.recipients_max)
        domains = rng.choices(t.domains, cum_weights=t.cum_weights, k=n_rcpt)
        recipients = tuple(f"user{rng.randrange(1_000_000)}@{d}" for d in domains)
        if spec.unknown_recipients > 0:
            pick = random.Random(f"unknown:{self.seed}:{index}")
            recipients = tuple(
                unknown_address(pick.randrange(spec.unknown_addresses), d)
                if pick.random() < spec.unknown_recipients
                else address
                for address, d in zip(recipients, domains, strict=True)
            )
        return rng, t, recipients

    def envelope(self, index: int) -> tuple[str, tuple[str, ...]]:
        """Message `index`'s stream and recipients, without building it (the analysis
        asks which recipients the plan made unknown)."""
        _, t, recipients = self._envelope(index)
        return t.spec.name, recipients

    def build(self, index: int, now: float = 0.0) -> Message:
        rng, t, recipients = self._envelope(index)
        spec = t.spec
        target = spec.size_median
        if spec.size_sigma > 0:
            target = int(spec.size_median * math.exp(rng.gauss(0.0, spec.size_sigma)))
        target = min(spec.size_max, max(spec.size_min, target))
        with_attachment = spec.attachment_share > 0 and rng.random() < spec.attachment_share
        msg_id = f"{self.run_id}-{index}"
        sender_domain = spec.sender.rpartition("@")[2] or "example.com"
        headers = (
            f"From: {spec.sender}\r\n"
            f"To: {', '.join(recipients)}\r\n"
            f"Subject: {spec.subject.format(index=index, stream=spec.name)}\r\n"
            f"Date: {self._date_header(now)}\r\n"
            f"Message-ID: <{msg_id}@{sender_domain}>\r\n"
            f"List-Unsubscribe: <mailto:unsubscribe@{sender_domain}?subject={msg_id}>, "
            f"<https://{sender_domain}/unsubscribe/{msg_id}>\r\n"
            f"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
            f"X-Maildrill-Run: {self.run_id}\r\n"
            f"X-Maildrill-Id: {msg_id}\r\n"
            f"X-Maildrill-Stream: {spec.name}\r\n"
        ).encode()
        if with_attachment:
            fixed = (
                len(headers)
                + len(t.head_mixed)
                + len(t.text_part)
                + len(t.html_open)
                + len(t.html_close)
                + len(t.attachment_part)
                + len(t.mixed_close)
            )
        else:
            fixed = (
                len(headers)
                + len(t.head_alternative)
                + len(t.text_part)
                + len(t.html_open)
                + len(t.html_close)
            )
        pad = _cut_at_line(t.filler, max(0, target - fixed))
        parts: tuple[bytes, ...]
        if with_attachment:
            parts = (
                headers,
                t.head_mixed,
                t.text_part,
                t.html_open,
                pad,
                t.html_close,
                t.attachment_part,
                t.mixed_close,
            )
        else:
            parts = (headers, t.head_alternative, t.text_part, t.html_open, pad, t.html_close)
        return Message(index, msg_id, spec.name, spec.sender, recipients, b"".join(parts))


def _cut_at_line(filler: bytes, size: int) -> bytes:
    """Exactly `size` bytes of filler ending in CRLF, never splitting a CRLF pair."""
    if size < 2:
        return b""
    piece = filler[: size - 2]
    if piece.endswith(b"\r"):
        piece = piece[:-1] + b" "
    return piece + b"\r\n"
