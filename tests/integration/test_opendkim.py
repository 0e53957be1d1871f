"""OpenDKIM itself (Debian's opendkim), configured as maildrill configures it for a Postfix
instance: it signs with the run's key so that the record the run publishes verifies the
signature (dkimpy), runs as its own user on a loopback port, stops by its PID, and one that
cannot start or cannot use its key says so in one line."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import dkim
import pytest

from loadtest.dkim_keys import make_keys, published_records
from loadtest.opendkim import OpenDkim, OpenDkimError, write_keys
from loadtest.server_spec import DkimSpec
from loadtest.supervise import Supervisor
from tests.helpers import REPO, postfix_run_dir, wait_until

pytestmark = pytest.mark.skipif(
    shutil.which("opendkim") is None and not Path("/usr/sbin/opendkim").exists(),
    reason="OpenDKIM is not installed (make tools)",
)

MESSAGE = (
    b"From: news@shop.test\r\nTo: a@gmail.test\r\nSubject: spring sale\r\n"
    b"X-Maildrill-Id: m1\r\n\r\nhello\r\n"
)


@pytest.fixture
def run_dir():
    """Under /var/tmp, as a drill's run directory is (the postfix user must reach it)."""
    yield from postfix_run_dir("maildrill-opendkim-")


def signer_for(run_dir: Path, publish: bool | str = True) -> tuple[OpenDkim, str]:
    keys = make_keys([DkimSpec(selector="s1", domain="shop.test", publish=publish)])
    files = write_keys(keys, run_dir / "dkim")
    (record,) = published_records(keys.values()).values()
    signer = OpenDkim("primary", run_dir / "postfix-primary" / "opendkim",
                      files[("s1", "shop.test")], "s1", "shop.test")  # fmt: skip
    signer.write()
    return signer, record


def opendkim_signs(signer: OpenDkim, tmp: Path) -> bytes:
    """The message as OpenDKIM signs it in its test mode (-t): its signature header added."""
    path = tmp / "m.eml"
    path.write_bytes(MESSAGE)
    done = subprocess.run(["opendkim", "-x", str(signer.config_file), "-t", str(path)],
                          capture_output=True, timeout=30, check=True)  # fmt: skip
    lines = done.stdout.splitlines()[1:]  # after its "opendkim: FILE:" line
    return b"".join(line + b"\r\n" for line in lines if line) + MESSAGE


def by_record(record: str):  # type: ignore[no-untyped-def]
    names = {b"s1._domainkey.shop.test", b"s1._domainkey.shop.test."}
    return lambda name, timeout=5: record.encode() if name in names else None


def test_the_published_key_verifies_what_opendkim_signs(run_dir, tmp_path):
    run_dir.mkdir(parents=True)
    signer, record = signer_for(run_dir)
    signer.check_signs()
    message = opendkim_signs(signer, tmp_path)
    assert message.startswith(b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/simple; d=shop.test;")
    assert dkim.verify(message, dnsfunc=by_record(record))
    wrong, wrong_record = signer_for(run_dir / "w", publish="wrong")
    assert not dkim.verify(opendkim_signs(wrong, tmp_path), dnsfunc=by_record(wrong_record))


def test_it_listens_on_loopback_as_its_own_user_and_stops_by_pid(run_dir):
    run_dir.mkdir(parents=True)
    signer, _ = signer_for(run_dir)
    children = Supervisor(run_dir)
    (run_dir / "logs").mkdir()
    signer.start(children)
    child = signer.child
    assert child is not None
    pid = child.proc.pid
    try:
        assert signer.listening()
        status = Path(f"/proc/{pid}/status").read_text()
        uid = next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:"))
        import pwd

        assert int(uid) == pwd.getpwnam("opendkim").pw_uid
    finally:
        signer.stop()
    assert child.proc.returncode is not None
    assert wait_until(lambda: not signer.listening(), 5)


# A maildrill that starts OpenDKIM as a run does, says its PID, and waits to be killed.
STARTER = """
import sys, time
from pathlib import Path
from loadtest.opendkim import OpenDkim
from loadtest.supervise import Supervisor
run_dir, key = Path(sys.argv[1]), Path(sys.argv[2])
signer = OpenDkim("primary", run_dir / "postfix-primary" / "opendkim", key, "s1", "shop.test")
signer.write()
signer.start(Supervisor(run_dir))
print(signer.child.proc.pid, flush=True)
time.sleep(120)
"""


def test_it_dies_with_a_maildrill_killed_by_sigkill(run_dir):
    """As its own user from its start: had it dropped to that user itself, Linux would
    have cleared the signal that stops it when its parent dies, and it would outlive a
    maildrill killed with SIGKILL."""
    run_dir.mkdir(parents=True)
    signer, _ = signer_for(run_dir)
    (run_dir / "logs").mkdir()
    pid = 0
    with subprocess.Popen(
        [sys.executable, "-c", STARTER, str(run_dir), str(signer.key_file)],
        stdout=subprocess.PIPE, text=True, cwd=REPO,
    ) as starter:  # fmt: skip
        try:
            assert starter.stdout is not None
            pid = int(starter.stdout.readline())
            assert Path(f"/proc/{pid}").exists()
            starter.kill()
            starter.wait(10)
            assert wait_until(lambda: not Path(f"/proc/{pid}").exists(), 15, step=0.05)
        finally:
            starter.kill()
            if pid and Path(f"/proc/{pid}").exists():  # the OpenDKIM this test started
                os.kill(pid, signal.SIGKILL)


def test_one_that_cannot_listen_fails_in_one_line(run_dir):
    """Its port bound by another socket (not listening: nothing answers for it): OpenDKIM
    exits at once, and says why."""
    run_dir.mkdir(parents=True)
    signer, _ = signer_for(run_dir)
    (run_dir / "logs").mkdir()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        signer.port = taken.getsockname()[1]
        signer.write()
        with pytest.raises(OpenDkimError) as caught:
            signer.start(Supervisor(run_dir))
    child = signer.child
    assert child is not None
    assert child.proc.poll() is not None  # it is gone, by itself
    signer.stop()
    text = str(caught.value)
    assert text == "OpenDKIM for postfix primary did not start: opendkim: smfi_opensocket() failed"


def test_a_port_another_program_answers_on_is_refused(run_dir):
    run_dir.mkdir(parents=True)
    signer, _ = signer_for(run_dir)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        signer.port = taken.getsockname()[1]
        signer.write()
        with pytest.raises(OpenDkimError, match=f"port {signer.port} is in use"):
            signer.start(Supervisor(run_dir))
    assert signer.child is None  # never started


def test_a_key_it_cannot_use_fails_before_it_starts(run_dir):
    run_dir.mkdir(parents=True)
    signer, _ = signer_for(run_dir)
    signer.key_file.write_bytes(b"-----BEGIN RSA PRIVATE KEY-----\nbanana\n")
    with pytest.raises(OpenDkimError, match="cannot sign with its key") as caught:
        signer.check_signs()
    assert "\n" not in str(caught.value)
