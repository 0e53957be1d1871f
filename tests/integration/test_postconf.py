"""Postfix's own reading of the main.cf maildrill generates (`postconf`, a real Postfix
program): the settings a scenario may pass reach Postfix as maildrill checked them."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.unit.test_postfix_config import HARMLESS, instance


@pytest.mark.skipif(shutil.which("postconf") is None, reason="Postfix is not installed")
def test_postconf_reads_back_the_loopback_settings(tmp_path):
    """Postfix's own reading of the generated main.cf, with hostile and harmless settings."""
    pf = instance(tmp_path, settings={k: str(v) for k, v in HARMLESS.items()})
    pf.config_dir.mkdir(parents=True)
    for name, text in pf.render().items():
        (pf.config_dir / name).write_text(text)
    keys = [
        *("inet_interfaces", "mynetworks", "relayhost", "default_transport", "relay_transport"),
        *("content_filter", "smtp_bind_address", "smtp_fallback_relay", "proxy_interfaces"),
    ]
    done = subprocess.run(
        ["postconf", "-c", str(pf.config_dir), *keys], capture_output=True, text=True, check=True
    )
    got = dict(
        line.split(" = ", 1) if " = " in line else (line[:-2], "")
        for line in done.stdout.splitlines()
    )
    assert got == {
        "inet_interfaces": "127.0.0.1",
        "mynetworks": "127.0.0.0/8",
        "relayhost": "[127.0.0.1]:2600",
        "default_transport": "smtp",
        "relay_transport": "relay",
        "content_filter": "",
        "smtp_bind_address": "",
        "smtp_fallback_relay": "$fallback_relay",
        "proxy_interfaces": "",
    }
