"""Real Postfix instances under test, built from the templates in templates/postfix/.

Each instance has its own config, queue and data directories under the run directory,
listens on a loopback port, runs without chroot, relays everything to a downstream sink,
and never touches the machine's default instance. Facts this relies on (Postfix 3.7):
without syslog it needs `maillog_file` plus the `postlog` service or it exits silently;
the queue and data directories must be reachable by the `postfix` user; it ignores a
`main.cf` younger than a second, so the file is back-dated.
"""

from __future__ import annotations

import ipaddress
import os
import pwd
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import NamedTuple

from maildrill.hostnames import ascii_domain
from maildrill.netaddr import is_loopback
from maildrill.paths import is_safe_name

QUEUE_STATES = ("maildrop", "incoming", "active", "deferred", "hold")
_ID = re.compile(rb"X-Maildrill-Id:\s*(.+)", re.IGNORECASE)

# -- what a scenario may put in main.cf ---------------------------------------------------
#
# maildrill writes these for every instance: where it lives, who it is, where it listens,
# whom it trusts, where it relays (postfix.relay) and routes (postfix.routes). Never the
# user's, with or without allow_remote.
OWNED_PARAMETERS = frozenset(
    {
        "config_directory", "alternate_config_directories", "queue_directory",
        "data_directory", "mail_owner", "setgid_group", "default_privs",
        "myhostname", "mydomain", "myorigin", "mydestination",
        "inet_interfaces", "inet_protocols", "proxy_interfaces", "mynetworks",
        "mynetworks_style", "relayhost", "transport_maps",
        "alias_maps", "alias_database", "local_recipient_maps",
        "smtp_bind_address", "smtp_helo_name",
        "import_environment", "export_environment", "master_service_disable",
    }
)  # fmt: skip
_OWNED_FAMILIES = re.compile(r"_director(y|ies)$|_path$|^maillog_file|^multi_instance_|^postlog")
# Parameters that choose where mail goes, where Postfix listens or binds, whom it accepts
# mail from, what it looks up (a table may be tcp:, ldap:, socketmap:inet:...) or what it
# runs: refused unless the scenario says allow_remote: true. Checked against every name of
# `postconf -d` (Postfix 3.7): what is left tunes timeouts, limits, TLS and behaviour.
_ROUTING = re.compile(
    r"relayhost|_relay$|^relay_(domains|transport|clientcerts)$|_maps?$|_checks$|"
    r"_restrictions$|^smtpd_restriction_classes$|_transports?$|_filter$|milters$|_nexthop$|"
    r"bind_address|_interfaces$|_commands?$|_shell$|_recipient$|_bcc$|_domains$|_networks$|"
    r"_hosts$|_clients$|_sites?$|_per_site$|_sasl_|_destinations?$|_access_list$|"
    r"^dnssec_probe$"
)
# A lookup table (type:name) or a service address (inet:host:port) anywhere in a value:
# Postfix reads a value wherever another parameter expands it, so no name is safe for it.
_TABLE = re.compile(
    r"(?<![A-Za-z0-9_.-])(btree|cdb|cidr|dbm|environ|fail|hash|inline|internal|ldap|lmdb|"
    r"memcache|mongodb|mysql|netinfo|nis|nisplus|pcre|pgsql|pipemap|proxy|randmap|regexp|"
    r"sdbm|socketmap|sqlite|static|tcp|texthash|unionmap|unix|inet|pass)\s*:",
    re.IGNORECASE,
)
_PARAMETER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")  # transport names may hold "-"
MAX_VALUE = 4096
_LOCAL_MILTER = re.compile(r"inet:127\.0\.0\.1:[1-9][0-9]{0,4}")


# Postfix expands $name, ${name} and $(name) wherever a value is used, and the conditional
# forms ${name?text} and ${name:text} too.
_REFERENCE = re.compile(r"\$(?:([A-Za-z0-9_]+)|\{([A-Za-z0-9_]+)\}|\(([A-Za-z0-9_]+)\))")


def _expansion_problem(value: str, defined: Collection[str]) -> str | None:
    """Expansion could join pieces that each pass the checks into a table or an address
    no check saw (`${x}:${y}` with x = tcp, y = a remote host). A plain reference to a
    parameter the settings do not give (`$myhostname`: Postfix's own or maildrill's) is
    fine; one to a parameter they give, and any conditional form, is not."""
    plain = _REFERENCE.sub("", value.replace("$$", ""))
    if "$" in plain:
        return f"{value!r} uses conditional or malformed $ expansion"
    for match in _REFERENCE.finditer(value.replace("$$", "")):
        ref = next(g for g in match.groups() if g)
        if ref in defined:
            return f"{value!r} expands {ref}, which these settings give too"
    return None


def one_line(text: str) -> bool:
    """No line break or other control character: one main.cf line stays one."""
    return not any(ord(c) < 32 or ord(c) == 127 for c in text)


def setting_problem(
    name: str, value: str, allow_remote: bool, defined: Collection[str] = ()
) -> str | None:
    """Why `name = value` may not go into an instance's main.cf, or None. `defined`: the
    other parameters the same settings give (a value may not expand them)."""
    if not _PARAMETER.fullmatch(name):
        return f"{name!r} is not a Postfix parameter name (letters, digits, _ and -)"
    if name in OWNED_PARAMETERS or _OWNED_FAMILIES.search(name):
        return (
            f"{name} is set by maildrill for every instance (use postfix.relay, "
            "postfix.routes, postfix.hostname, postfix.source_address, postfix.helo_name)"
        )
    if not one_line(value):
        return f"{name}: the value holds a line break or control character"
    if len(value) > MAX_VALUE:
        return f"{name}: the value is over {MAX_VALUE} characters"
    if allow_remote:
        return None
    if _ROUTING.search(name):
        return (
            f"{name} chooses where Postfix relays, listens, accepts mail from or looks things "
            "up; set allow_remote: true to set it"
        )
    expansion = _expansion_problem(value, defined)
    if expansion:
        return f"{name}: {expansion}; set allow_remote: true to use it"
    if _TABLE.search(value):
        return (
            f"{name}: {value!r} names a lookup table or a service address; "
            "set allow_remote: true to use one"
        )
    return None


class PostfixError(RuntimeError):
    """Postfix could not be set up or driven; the message says why in one line."""


def postfix_binary() -> str:
    path = shutil.which("postfix") or "/usr/sbin/postfix"
    if not Path(path).exists():
        raise PostfixError("Postfix is not installed (Debian package postfix; see `make tools`)")
    return path


def unreachable_for_postfix(directory: Path) -> Path | None:
    """The first directory on the way that the postfix user may not enter, if any."""
    user = pwd.getpwnam("postfix")
    for part in [directory.resolve(), *directory.resolve().parents]:
        if not part.exists():
            continue
        st = part.stat()
        if st.st_uid == user.pw_uid:
            continue
        if st.st_mode & 0o001 or (st.st_gid == user.pw_gid and st.st_mode & 0o010):
            continue
        return part
    return None


@dataclass
class PostfixInstance:
    name: str
    base: Path  # run_dir / postfix-NAME
    port: int
    relay: tuple[str, int]
    hostname: str
    settings: dict[str, str]
    routes: dict[str, tuple[str, int]] = field(default_factory=dict)  # domain: sink address
    allow_remote: bool = False  # the scenario's: routing parameters and hops off loopback
    source_address: str = ""  # smtp_bind_address: where it delivers from ("": the kernel's)
    helo_name: str = ""  # smtp_helo_name ("": its hostname)
    milter: str = ""  # its OpenDKIM, inet:127.0.0.1:PORT ("": none)

    @property
    def config_dir(self) -> Path:
        return self.base / "etc"

    @property
    def queue_dir(self) -> Path:
        return self.base / "queue"

    @property
    def maillog(self) -> Path:
        return self.base / "maillog"

    def write(self) -> None:
        blocked = unreachable_for_postfix(self.base.parent)
        if blocked is not None:
            raise PostfixError(
                f"the postfix user cannot enter {blocked}: run with --out in a directory "
                "others may traverse (chmod o+x), e.g. under /var/tmp"
            )
        files = self.render()
        for sub in ("etc", "queue", "data"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        postfix = pwd.getpwnam("postfix")
        os.chown(self.base / "data", postfix.pw_uid, postfix.pw_gid)
        for file, text in files.items():
            path = self.config_dir / file
            path.write_text(text)
            # Postfix waits until main.cf is over a second old before acting on it.
            past = time.time() - 5
            os.utime(path, (past, past))

    def render(self) -> dict[str, str]:
        """main.cf, master.cf and the transport table, from the templates. Every value is
        checked here, whoever built this instance: one line each, the relay and routes on
        loopback and settings within the rules (setting_problem), unless allow_remote."""
        self._check()
        values = {
            "NAME": self.name,
            "QUEUE_DIR": str(self.queue_dir),
            "DATA_DIR": str(self.base / "data"),
            "HOSTNAME": ascii_domain(self.hostname),
            "RELAY_HOST": self.relay[0],
            "RELAY_PORT": str(self.relay[1]),
            "MAILLOG": str(self.maillog),
            "MAILLOG_PREFIX": str(self.base),
            "LISTEN": f"127.0.0.1:{self.port}",
            "SOURCE_ADDRESS": self.source_address,
            "HELO_NAME": ascii_domain(self.helo_name or self.hostname),
            "MILTERS": self.milter,
            # texthash: read as it is, no postmap step; empty: every domain to the relay.
            "TRANSPORT_MAPS": f"texthash:{self.config_dir / 'transport'}" if self.routes else "",
        }
        files = {
            "transport": "".join(
                f"{d} smtp:[{h}]:{p}\n" for d, (h, p) in sorted(self.routes.items())
            )
        }
        templates = resources.files("loadtest") / "templates" / "postfix"
        for file in ("main.cf", "master.cf"):
            text = (templates / file).read_text()
            for key, value in values.items():
                text = text.replace(f"@@{key}@@", value)
            if file == "main.cf" and self.settings:
                text += "\n# from the scenario\n" + "".join(
                    f"{k} = {v}\n" for k, v in self.settings.items()
                )
            files[file] = text
        return files

    def _check(self) -> None:
        where = f"postfix {self.name}"
        if not is_safe_name(self.name):
            raise PostfixError(f"{where!r}: the name is not a server name")
        try:
            ascii_domain(self.hostname)
        except ValueError as exc:
            raise PostfixError(f"{where}: hostname: {exc}") from None
        if not one_line(str(self.base)):
            raise PostfixError(f"{where}: {str(self.base)!r} holds a line break")
        if not 0 < self.port < 65536:
            raise PostfixError(f"{where}: port {self.port} is not a TCP port")
        self._check_identity()
        if self.milter:
            if not _LOCAL_MILTER.fullmatch(self.milter):
                raise PostfixError(f"{where}: milter {self.milter!r} is not inet:127.0.0.1:PORT")
            for name in ("smtpd_milters", "non_smtpd_milters"):
                if name in self.settings:
                    raise PostfixError(f"{where}: settings: {name}: its milter is OpenDKIM")
        self._check_hop("relay", self.relay)
        for domain, hop in self.routes.items():
            try:
                ascii_domain(domain)
            except ValueError as exc:
                raise PostfixError(f"{where}: routes: {exc}") from None
            self._check_hop(f"routes[{domain}]", hop)
        for name, value in self.settings.items():
            problem = setting_problem(name, value, self.allow_remote, self.settings)
            if problem is not None:
                raise PostfixError(f"{where}: settings: {problem}")

    def _check_identity(self) -> None:
        """The source address an IPv4 address, loopback unless allow_remote (the instance
        speaks IPv4 only); the EHLO name a host name."""
        where = f"postfix {self.name}"
        if self.source_address:
            try:
                ipaddress.IPv4Address(self.source_address)
            except ValueError:
                raise PostfixError(
                    f"{where}: source_address {self.source_address!r} is not an IPv4 address"
                ) from None
            if not self.allow_remote and not is_loopback(self.source_address):
                raise PostfixError(
                    f"{where}: source_address {self.source_address} is outside loopback"
                )
        try:
            ascii_domain(self.helo_name or self.hostname)
        except ValueError as exc:
            raise PostfixError(f"{where}: helo_name: {exc}") from None

    def _check_hop(self, what: str, hop: tuple[str, int]) -> None:
        """A next hop as Postfix writes it, [host]:port: loopback unless allow_remote."""
        host, port = hop
        where = f"postfix {self.name}: {what}"
        try:
            ipaddress.ip_address(host)
        except ValueError:
            try:
                ascii_domain(host)
            except ValueError:
                raise PostfixError(f"{where}: {host!r} is not an address or host name") from None
        if not 0 < port < 65536:
            raise PostfixError(f"{where}: port {port} is not a TCP port")
        if not self.allow_remote and not is_loopback(host):
            raise PostfixError(f"{where}: {host} is outside loopback")

    def _postfix(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [postfix_binary(), "-c", str(self.config_dir), *args],
            capture_output=True,
            text=True,
            timeout=30,
        )

    def check(self) -> None:
        done = self._postfix("check")
        if done.returncode != 0:
            why = (done.stderr or done.stdout).strip().splitlines()
            raise PostfixError(f"postfix check of {self.name}: {why[-1] if why else 'failed'}")

    def start(self, timeout: float = 10.0, grace_s: float = 0.0) -> None:
        """Start and wait for the listener. Something else on the port would answer for
        Postfix: refuse to start on it, after `grace_s` for a restart (this instance's own
        smtpd children, just stopped or aborted, exit on their own)."""
        deadline = time.time() + grace_s
        while self.listening():
            if time.time() >= deadline:
                raise PostfixError(
                    f"postfix {self.name}: port {self.port} is in use (by another program, "
                    "or by this instance's own processes not yet gone)"
                )
            time.sleep(0.05)
        done = self._postfix("start")
        if done.returncode != 0:
            raise PostfixError(f"postfix {self.name} did not start: {self.last_log_line()}")
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.listening():
                return
            time.sleep(0.05)
        raise PostfixError(f"postfix {self.name} started but does not listen on {self.port}")

    def stop(self) -> None:
        self._postfix("stop")

    def halt(self, how: str) -> None:
        """`postfix stop` or `postfix abort` as a drill's fault: it must take effect, or
        the drill would run without its outage (an instance already dead says so here)."""
        done = self._postfix(how)
        if done.returncode != 0:
            said = (done.stderr or done.stdout).strip().splitlines()
            why = said[-1] if said else self.last_log_line()
            raise PostfixError(f"postfix {how} of {self.name} failed: {why}")

    def abort(self) -> None:
        self._postfix("abort")

    def running(self) -> bool:
        return self._postfix("status").returncode == 0

    def listening(self) -> bool:
        with socket.socket() as s:
            s.settimeout(0.5)
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def last_log_line(self) -> str:
        try:
            lines = self.maillog.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return lines[-1] if lines else "no log"

    def troubles(self) -> list[str]:
        """The distinct fatal/panic lines of its log: a Postfix daemon that died (say, a
        bad main.cf value `postfix check` lets through) leaves mail stuck, and says why."""
        try:
            text = self.maillog.read_text(errors="replace")
        except OSError:
            return []
        seen: dict[str, None] = {}
        for line in text.splitlines():
            for mark in (" fatal: ", " panic: "):
                if mark in line:
                    daemon = line.split(": ", 1)[0].rsplit(" ", 1)[-1].split("[", 1)[0]
                    if daemon.endswith("postfix-script"):
                        continue  # `postfix stop` of a stopped instance, not a daemon's death
                    seen[f"{daemon}: {mark.strip()} {line.split(mark, 1)[1]}"] = None
        return list(seen)

    def queued(self) -> list[Queued]:
        """Every message still in this instance's queue: its X-Maildrill-Id, queue state and
        the recipients it has yet to deliver."""
        found = []
        for state in QUEUE_STATES:
            for path in (self.queue_dir / state).rglob("*"):
                if not path.is_file():
                    continue
                try:
                    data = path.read_bytes()
                except FileNotFoundError:  # a running Postfix moved it to another queue
                    continue
                found.append(Queued(*queue_file(data), state=state))
        return found


class Queued(NamedTuple):
    """A message in a Postfix queue: what mta-queue-NAME.csv records of it."""

    msg_id: str  # its X-Maildrill-Id ('' if absent)
    pending: tuple[str, ...]  # recipients not yet delivered, in the file's order
    state: str = ""  # the queue it was found in: active, deferred, hold, ...


# Postfix's queue file record types (src/global/rec_type.h): a recipient still to do, one
# whose delivery status is established (the 'R' byte rewritten in place), a message line.
REC_RCPT, REC_DONE, REC_NORM = ord("R"), ord("D"), ord("N")


def queue_file(data: bytes) -> tuple[str, tuple[str, ...]]:
    """(X-Maildrill-Id, recipients still to deliver) of a Postfix queue file.

    A queue file is a run of records: a type byte, a length (7 bits a byte, low bits first,
    high bit set on all but the last), then that many bytes. Message lines are records of
    type 'N', one line each, without line ends; a recipient is an 'R' record until its
    delivery is done, when Postfix rewrites its type to 'D' (so a message split by
    destination, one part delivered and one deferred, lists only the deferred part).
    """
    msg_id = ""
    pending: list[str] = []
    i, end = 0, len(data)
    while i < end:
        kind = data[i]
        i += 1
        length = shift = 0
        while i < end:
            byte = data[i]
            i += 1
            length |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
        payload = data[i : i + length]
        i += length
        if kind == REC_RCPT:
            pending.append(payload.decode(errors="replace"))
        elif kind == REC_NORM and not msg_id:
            match = _ID.match(payload)
            if match:
                msg_id = match.group(1).decode(errors="replace").strip()
    return msg_id, tuple(pending)
