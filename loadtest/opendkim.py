"""OpenDKIM (Debian package `opendkim`) as the milter of a Postfix instance under test:
the real signer people put next to Postfix, configured and run by maildrill per instance.

Each signing instance gets its own OpenDKIM in the foreground (`-f`), a child of the run
supervised by PID like the sinks (its own session), started before its Postfix and
stopped after it, also when the Postfix stop fails. Unlike the sinks it does not get SIGTERM
when maildrill itself is killed: as root it drops to the `opendkim` user, and Linux clears
a parent-death signal on that change (prctl(2)), as it would for Postfix's own daemons.
It listens on a loopback TCP port, which the `postfix` user reaches without any file
permission; its config, key table and signing table live in `postfix-NAME/opendkim/` of
the run directory. It signs every message it is
given with d=DOMAIN, s=SELECTOR (a signing table of `*`: the From: domain does not choose
the key, so a scenario can drill an unaligned signature too), relaxed/simple, as root
drops to the `opendkim` user, which alone may read the private key (OpenDKIM refuses a key
others can read). It logs only to syslog, which a drill does not have: whether it signed
shows in the verifying sinks' journals.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from loadtest.dkim_keys import DkimKey, txt_value
from loadtest.postfix import one_line
from loadtest.supervise import Child, Supervisor, free_port
from maildrill.paths import inside

USER = "opendkim"
# libmilter acts on SIGTERM only at its next poll, up to 5 s later. By then its Postfix is
# stopped: no message is in flight and OpenDKIM keeps no state, so it is not waited for
# that long (a drill would spend 5 s per run on it): after this, SIGKILL.
STOP_GRACE_S = 1.5


class OpenDkimError(RuntimeError):
    """OpenDKIM could not be set up or started; the message says why in one line."""


def opendkim_binary() -> str:
    path = shutil.which("opendkim") or "/usr/sbin/opendkim"
    if not Path(path).exists():
        raise OpenDkimError("OpenDKIM is not installed (Debian package opendkim; see `make tools`)")
    return path


@dataclass
class OpenDkim:
    server: str  # the Postfix instance it signs for
    directory: Path  # run_dir / postfix-NAME / opendkim
    key_file: Path
    selector: str
    domain: str
    port: int = 0  # 0: a free one, chosen when written
    child: Child | None = None
    terminated: bool = False  # SIGTERM sent

    @property
    def config_file(self) -> Path:
        return self.directory / "opendkim.conf"

    @property
    def milter(self) -> str:
        """Its address as Postfix's smtpd_milters writes it."""
        return f"inet:127.0.0.1:{self.port}"

    def render(self) -> dict[str, str]:
        """opendkim.conf, the key table and the signing table."""
        for path in (self.directory, self.key_file):
            if not one_line(str(path)) or " " in str(path):
                raise OpenDkimError(f"OpenDKIM for postfix {self.server}: {str(path)!r} "
                                    "holds a space, line break or control character")  # fmt: skip
        return {
            "opendkim.conf": (
                f"# maildrill: OpenDKIM signing for postfix {self.server}; written per run.\n"
                "Syslog no\n"
                "Mode s\n"
                f"Socket inet:{self.port}@127.0.0.1\n"
                f"KeyTable file:{self.directory / 'keytable'}\n"
                f"SigningTable refile:{self.directory / 'signingtable'}\n"
                "Canonicalization relaxed/simple\n"
                "SignatureAlgorithm rsa-sha256\n"
                "OversignHeaders From\n"
                # Whom it signs for: what the instance relays for (mynetworks), not just
                # 127.0.0.1, its default (a sender bound to another loopback address).
                "InternalHosts 127.0.0.0/8\n"
                # The key file is 0600 and OpenDKIM's user's alone, but the run directory
                # lies under /var/tmp (where the postfix user can reach it), and OpenDKIM
                # 2.11 refuses any key below a world-writable directory, sticky or not:
                # every message would be tempfailed.
                "RequireSafeKeys false\n"
            ),
            "keytable": f"run {self.domain}:{self.selector}:{self.key_file}\n",
            "signingtable": "* run\n",
        }

    def write(self) -> None:
        if not self.port:
            self.port = free_port()
        self.directory.mkdir(parents=True, exist_ok=True)
        for name, text in self.render().items():
            (self.directory / name).write_text(text)

    def check_signs(self) -> None:
        """`opendkim -t`: the config signs a message with its key, as it will every
        message of the run. Without this, a key OpenDKIM cannot use shows only as Postfix
        answering 4.7.1 to every message (OpenDKIM logs to syslog alone)."""
        sample = self.directory / "sample.eml"
        sample.write_text(f"From: check@{self.domain}\r\nSubject: check\r\n\r\ncheck\r\n")
        try:
            done = subprocess.run(
                [opendkim_binary(), "-x", str(self.config_file), "-t", str(sample)],
                capture_output=True, text=True, timeout=30,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise OpenDkimError(
                f"OpenDKIM for postfix {self.server}: its signing test took over 30s"
            ) from None
        finally:
            sample.unlink(missing_ok=True)
        if done.returncode != 0 or "DKIM-Signature:" not in done.stdout:
            said = (done.stderr or done.stdout).strip().splitlines()
            why = said[-1] if said else f"opendkim -t exit code {done.returncode}"
            raise OpenDkimError(
                f"OpenDKIM for postfix {self.server} cannot sign with its key: {why}"
            )

    def start(self, children: Supervisor, timeout: float = 10.0) -> None:
        """Start it and wait until it listens; OpenDkimError (its last words) if it dies
        first or stays silent. Something else already on its port would answer for it:
        refused before it starts."""
        if self.listening():
            raise OpenDkimError(f"OpenDKIM for postfix {self.server}: port {self.port} is in use")
        cmd = [opendkim_binary(), "-f", "-x", str(self.config_file)]
        # As its own user from the start (key_owner), never `UserID`: dropping to it would
        # clear the signal that stops it when maildrill dies (Supervisor.spawn).
        self.child = children.spawn("dkim", f"opendkim-{self.server}", cmd, user=key_owner())
        deadline = time.time() + timeout
        while time.time() < deadline:
            code = self.child.proc.poll()
            if code is not None:
                why = self.child.last_log_line() or f"exit code {code}"
                raise OpenDkimError(f"OpenDKIM for postfix {self.server} did not start: {why}")
            if self.listening() and self.child.proc.poll() is None:
                return
            time.sleep(0.05)
        raise OpenDkimError(
            f"OpenDKIM for postfix {self.server} does not listen on {self.port} after {timeout:g}s"
        )

    def listening(self) -> bool:
        with socket.socket() as s:
            s.settimeout(0.5)
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def terminate(self) -> None:
        """SIGTERM to its PID, not waiting: a fleet asks each of its signers as soon as its
        Postfix is stopped, then waits for them all at once (STOP_GRACE_S)."""
        if self.child is not None:
            self.child.signal(signal.SIGTERM)
            self.terminated = True

    def stop(self, grace: float = STOP_GRACE_S) -> None:
        """SIGTERM to its PID (unless sent already), SIGKILL after `grace` seconds."""
        if self.child is not None:
            self.child.stop(None if self.terminated else signal.SIGTERM, grace)
            self.child = None


def _runs_as_own_user() -> bool:
    """As root, OpenDKIM runs as its own user (if the package made it)."""
    if os.geteuid() != 0:
        return False
    try:
        pwd.getpwnam(USER)
    except KeyError:
        return False
    return True


def key_owner() -> tuple[int, int] | None:
    """Who must own the private key file: the user OpenDKIM runs as (None: as we are)."""
    if not _runs_as_own_user():
        return None
    user = pwd.getpwnam(USER)
    return user.pw_uid, user.pw_gid


def write_keys(
    keys: Mapping[tuple[str, str], DkimKey], directory: Path
) -> dict[tuple[str, str], Path]:
    """Each key's private half for OpenDKIM (0600, its user's) and the record of its public
    half (`NAME.txt`, the key the instances sign with, whatever the zone publishes), in
    `directory` (the run's `dkim/`); the private key files, by key."""
    directory.mkdir(parents=True, exist_ok=True)
    owner = key_owner()
    files = {}
    for ident, key in keys.items():
        private = inside(directory, f"{key.file_stem}.private")
        fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # a file already there keeps its mode through O_CREAT
        with os.fdopen(fd, "wb") as f:
            f.write(key.private_pem)
        if owner is not None:
            os.chown(private, *owner)
        inside(directory, f"{key.file_stem}.txt").write_text(txt_value(key.public_b64) + "\n")
        files[ident] = private
    return files
