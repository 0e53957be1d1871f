"""maildrill as a user gets it: the wheel installed into a fresh virtualenv outside the
checkout and run from another folder (and, the same way, an editable install).

Inside the checkout, files found relative to the source tree and package data missing from
the wheel both go unnoticed; here they fail. No internet: the wheel is built with the
running environment's setuptools (--no-build-isolation), and the new virtualenv reaches
the third-party dependencies through a .pth line naming this environment's site-packages,
a plain path, so that environment's own .pth files (its editable maildrill) are not run.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import REPO

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

PACKAGES = ("loadtest", "sinks", "maildrill", "scenarios")
# What the build needs and nothing else: a stale build/ or egg-info would leak old files
# into the wheel, and the checkout is left as it was.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "reports",
    "tests", "benchmarks",
)  # fmt: skip
SHORT_DRILL = [
    "--set", "campaign.schedule.0.duration_s=1",
    "--set", "campaign.schedule.1.duration_s=3",
    "--set", "campaign.schedule.2.duration_s=1",
    "--set", "campaign.drain_s=2",
    "--set", "faults=[]",
]  # fmt: skip


@dataclass(frozen=True)
class Venv:
    root: Path
    elsewhere: Path  # an empty folder outside the checkout, the commands' working directory

    @property
    def site_packages(self) -> Path:
        return Path(sysconfig.get_path("purelib", vars={"base": str(self.root)}))

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        return subprocess.run(
            [str(self.root / "bin" / args[0]), *args[1:]],
            cwd=self.elsewhere, env=env, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip


def _fresh_venv(root: Path) -> Venv:
    """A virtualenv of this interpreter that sees the third-party packages and not maildrill."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    venv = Venv(root, root.parent / f"{root.name}-elsewhere")
    venv.elsewhere.mkdir()
    deps = sysconfig.get_path("purelib")
    (venv.site_packages / "_shared_deps.pth").write_text(deps + "\n")
    return venv


def _install(venv: Venv, *target: str) -> None:
    # pip from the shared site-packages, run by the new interpreter so that it installs
    # there; --ignore-installed: the maildrill the shared environment lists is not touched.
    done = venv.run(
        "python", "-m", "pip", "install", "--no-deps", "--no-index", "--no-build-isolation",
        "--ignore-installed", "--disable-pip-version-check", *target,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    for tool in ("pip", "setuptools"):  # both in the dev extras: skipped only outside them
        if importlib.util.find_spec(tool) is None:
            pytest.skip(f"no {tool} in this environment to build and install the wheel")
    copy = tmp_path_factory.mktemp("source") / "maildrill"
    shutil.copytree(REPO, copy, ignore=NOT_SOURCE)
    return copy


@pytest.fixture(scope="module")
def wheel(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "--disable-pip-version-check", "-q", "-w", str(dist), str(source)],
        check=True, capture_output=True, timeout=240,
    )  # fmt: skip
    (built,) = dist.glob("maildrill-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    venv = _fresh_venv(tmp_path_factory.mktemp("wheel") / "venv")
    _install(venv, str(wheel))
    return venv


def test_the_wheel_holds_the_package_data(wheel: Path):
    names = set(zipfile.ZipFile(wheel).namelist())
    for scenario in (REPO / "scenarios").glob("*.yaml"):
        assert f"scenarios/{scenario.name}" in names
    for example in (REPO / "sinks" / "examples").glob("*.yaml"):
        assert f"sinks/examples/{example.name}" in names
    for template in ("main.cf", "master.cf"):
        assert f"loadtest/templates/postfix/{template}" in names
    for package in PACKAGES:
        assert f"{package}/__init__.py" in names
    for typed in ("loadtest", "sinks", "maildrill"):
        assert f"{typed}/py.typed" in names


def test_the_installed_package_is_the_one_imported(installed: Venv):
    done = installed.run(
        "python", "-c",
        "import json, sys, importlib; "
        f"print(json.dumps([sys.path, [importlib.import_module(p).__file__ for p in {PACKAGES}]]))",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    path, files = json.loads(done.stdout)
    assert str(REPO) not in {str(Path(entry or installed.elsewhere).resolve()) for entry in path}
    for file in files:
        assert Path(file).resolve().is_relative_to(installed.site_packages.resolve()), file


def test_scenarios_lists_every_bundled_drill_from_elsewhere(installed: Venv):
    done = installed.run("maildrill", "scenarios")
    assert done.returncode == 0, done.stderr
    listed = {line.split()[0] for line in done.stdout.splitlines()}
    assert listed == {p.stem for p in (REPO / "scenarios").glob("*.yaml")}


def test_validate_finds_the_bundled_default_from_elsewhere(installed: Venv):
    done = installed.run("maildrill", "validate", "default")
    assert done.returncode == 0, done.stderr
    assert "ok: default:" in done.stdout
    assert str(installed.site_packages) in done.stdout  # the file named is the installed one


def test_a_short_drill_runs_from_elsewhere(installed: Venv):
    out = installed.elsewhere / "run"
    done = installed.run("maildrill", "run", "default", *SHORT_DRILL, "--out", str(out),
                         timeout=240)  # fmt: skip
    assert done.returncode in (0, 1), done.stderr  # ran and was judged (1: an SLO failed)
    messages = json.loads((out / "summary.json").read_text())["messages"]
    assert messages["planned"] == 200
    assert messages["accepted"] > 0
    assert messages["lost"] == 0
    assert "name: default" in (out / "scenario.yaml").read_text()


def test_an_editable_install_finds_the_bundled_scenarios(source: Path, tmp_path_factory):
    """What `pip install -e '.[dev]'` (CI, make setup) gives: the same lookup, other files."""
    venv = _fresh_venv(tmp_path_factory.mktemp("editable") / "venv")
    _install(venv, "-e", str(source))
    done = venv.run("maildrill", "validate", "primary-drop")
    assert done.returncode == 0, done.stderr
    assert f"{source / 'scenarios' / 'primary-drop.yaml'}: ok: primary-drop:" in done.stdout
    listed = venv.run("maildrill", "scenarios")
    assert listed.returncode == 0, listed.stderr
    assert "default" in {line.split()[0] for line in listed.stdout.splitlines()}
