"""aiosmtpd's private API is used in sinks/aiosmtpd_compat.py only, for the tested versions.

The scan reads `sinks/` with `ast` and flags, outside the compat module:
- a `_name` imported from aiosmtpd, asyncio or aiohttp;
- in a class derived from one of their classes, a `self._name` or a method `_name` that the
  library class itself has (reading its state, or overriding its private hook);
- anywhere else, `obj._name` for a `_name` that one of those libraries' classes has.
A class's own `self._name` (one the library does not have) is its own business.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import sys
import textwrap
import tomllib
from functools import cache
from pathlib import Path

import aiosmtpd
import pytest

from sinks.aiosmtpd_compat import REQUIREMENT, UnsupportedAiosmtpd, check_version
from tests.helpers import REPO

ROOT = REPO
LIBRARIES = ("aiosmtpd", "asyncio", "aiohttp")
# Where the library classes a sink touches live; `obj._name` is checked against them all.
LIBRARY_MODULES = (
    "aiosmtpd.smtp",
    "asyncio.events",
    "asyncio.protocols",
    "asyncio.streams",
    "asyncio.transports",
    "aiohttp.web_runner",
)


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _from_library(obj: object) -> bool:
    return getattr(obj, "__module__", "").split(".")[0] in LIBRARIES


@cache
def private_names_of(cls: type) -> frozenset[str]:
    """The private names a library class and its library bases define or set on self."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if not _from_library(klass):
            continue
        names.update(n for n in vars(klass) if _private(n))
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):  # no Python source (a C class): its vars() it is
            continue
        for node in ast.walk(ast.parse(source)):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "self"
                and _private(node.attr)
            ):
                names.add(node.attr)
    return frozenset(names)


@cache
def library_private_names() -> frozenset[str]:
    names: set[str] = set()
    for module_name in LIBRARY_MODULES:
        module = importlib.import_module(module_name)
        names.update(n for n in vars(module) if _private(n))
        for value in vars(module).values():
            if isinstance(value, type) and _from_library(value):
                names |= private_names_of(value)
    return frozenset(names)


class _Scan(ast.NodeVisitor):
    """Private uses of library API in one module's source (see the module docstring)."""

    def __init__(self, module: str, tree: ast.Module) -> None:
        self.module = module
        self.found: list[str] = []
        self.imports: dict[str, str] = {}  # local name -> dotted name it was imported as
        self.local_classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
        self.classes: list[frozenset[str]] = []  # for each enclosing class: library privates
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    self.imports[alias.asname or alias.name.split(".")[0]] = (
                        alias.name if alias.asname else alias.name.split(".")[0]
                    )
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for alias in node.names:
                    self.imports[alias.asname or alias.name] = f"{node.module}.{alias.name}"

    def _flag(self, node: ast.AST, what: str) -> None:
        self.found.append(f"{self.module}:{getattr(node, 'lineno', 0)}: {what}")

    def _resolve(self, expr: ast.expr) -> object | None:
        """The object a base-class expression names, when it is imported or local."""
        parts: list[str] = []
        while isinstance(expr, ast.Attribute):
            parts.insert(0, expr.attr)
            expr = expr.value
        if not isinstance(expr, ast.Name):
            return None
        if expr.id in self.local_classes and not parts:
            return self.local_classes[expr.id]
        dotted = self.imports.get(expr.id)
        if dotted is None:
            return None
        names = [*dotted.split("."), *parts]
        for i in range(len(names), 0, -1):  # the longest importable prefix, then attributes
            try:
                obj: object = importlib.import_module(".".join(names[:i]))
            except ImportError:
                continue
            for attr in names[i:]:
                obj = getattr(obj, attr)
            return obj
        return None

    def _library_privates(self, node: ast.ClassDef) -> frozenset[str]:
        names: set[str] = set()
        for base in node.bases:
            obj = self._resolve(base)
            if isinstance(obj, ast.ClassDef):
                names |= self._library_privates(obj)
            elif isinstance(obj, type):
                names |= private_names_of(obj)
        return frozenset(names)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if (node.module or "").split(".")[0] in LIBRARIES:
            for alias in node.names:
                if _private(alias.name):
                    self._flag(node, f"imports {node.module}.{alias.name}")

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        privates = self._library_privates(node)
        for item in node.body:
            if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and item.name in privates:
                self._flag(item, f"{node.name} overrides {item.name}")
        self.classes.append(privates)
        self.generic_visit(node)
        self.classes.pop()

    def visit_Attribute(self, node: ast.Attribute) -> None:
        name = node.attr
        if _private(name):
            on_self = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            if on_self and self.classes:
                if name in self.classes[-1]:
                    self._flag(node, f"self.{name}")
            elif not on_self and name in library_private_names():
                self._flag(node, f"{ast.unparse(node.value)}.{name}")
        self.generic_visit(node)


def private_uses(path: Path, module: str) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    scan = _Scan(module, tree)
    scan.visit(tree)
    return scan.found


def test_the_scan_knows_the_private_names_the_sinks_need():
    """A scan that knew no names would pass anything: these are the ones compat wraps."""
    names = library_private_names()
    for name in ("_handle_client", "_reader", "_timeout_handle", "_limit", "_Missing"):
        assert name in names


def test_sinks_use_no_private_api_of_aiosmtpd_or_asyncio_outside_the_compat_module():
    found: list[str] = []
    for path in sorted((ROOT / "sinks").rglob("*.py")):
        if path.name == "aiosmtpd_compat.py":
            continue
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        found += private_uses(path, module)
    assert not found, "use sinks.aiosmtpd_compat:\n" + "\n".join(found)


def test_the_scan_finds_each_kind_of_private_use(tmp_path: Path):
    source = tmp_path / "example.py"
    source.write_text(
        textwrap.dedent(
            """
            import asyncio
            from aiosmtpd.smtp import SMTP, _Missing

            class Mine(SMTP):
                async def _handle_client(self):
                    self._deadline = 1  # its own: fine
                    return self._reader

            class Plain:
                def __init__(self):
                    self._eof = False  # its own, though StreamReader has one: fine

            def f(reader: asyncio.StreamReader):
                return reader._limit
            """
        )
    )
    assert private_uses(source, "example") == [
        "example:3: imports aiosmtpd.smtp._Missing",
        "example:6: Mine overrides _handle_client",
        "example:8: self._reader",
        "example:15: reader._limit",
    ]


# -- the version range ----------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1.4.6", "1.4.6.post1", "1.4.9", "1.4.10rc1"])
def test_versions_in_the_tested_range_pass(version: str):
    check_version(version)


@pytest.mark.parametrize("version", ["1.4.5", "1.4", "1.5.0", "1.5.0a1", "2.0", "", "dev"])
def test_a_version_outside_the_tested_range_is_one_clear_line(version: str):
    with pytest.raises(UnsupportedAiosmtpd) as info:
        check_version(version)
    message = str(info.value)
    assert "\n" not in message
    assert REQUIREMENT in message
    assert f"found aiosmtpd {version}:" in message


def test_the_installed_aiosmtpd_passes_and_the_pin_is_the_tested_range():
    check_version(aiosmtpd.__version__)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pins = [d for d in pyproject["project"]["dependencies"] if re.match(r"aiosmtpd\b", d)]
    assert pins == [REQUIREMENT]


def test_importing_the_sinks_with_an_untested_aiosmtpd_fails_with_that_line(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setattr(aiosmtpd, "__version__", "1.5.0")
    monkeypatch.delitem(sys.modules, "sinks.aiosmtpd_compat")
    # a class of the module run again: ImportError, its base
    with pytest.raises(
        ImportError, match=r"need aiosmtpd>=1\.4\.6,<1\.5 .* found aiosmtpd 1\.5\.0"
    ):
        importlib.import_module("sinks.aiosmtpd_compat")


def test_command_lines_are_logged_scrubbed_only_when_the_logger_keeps_them() -> None:
    """aiosmtpd's per-command `sanitized_log` is ours: a logger at INFO still gets each
    line with an AUTH secret scrubbed, and a logger at WARNING (a sink's) gets nothing."""
    import logging

    import aiosmtpd.smtp

    from sinks.aiosmtpd_compat import sanitized_log_if_enabled

    assert aiosmtpd.smtp.sanitized_log is sanitized_log_if_enabled
    logger = logging.getLogger("maildrill.test.sanitized")
    kept: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = kept.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    logger.propagate = False
    line = b"AUTH PLAIN c2VjcmV0\r\n"
    try:
        logger.setLevel(logging.INFO)
        aiosmtpd.smtp.sanitized_log(logger.info, "%r >> %r", "peer", line)
        aiosmtpd.smtp.sanitized_log(logger.debug, "readline: %r", line)  # below INFO
        assert [r.getMessage() for r in kept] == ["'peer' >> b'AUTH PLAIN ********\\r\\n'"]
        logger.setLevel(logging.WARNING)
        aiosmtpd.smtp.sanitized_log(logger.info, "%r >> %r", "peer", line)
        assert len(kept) == 1
    finally:
        logger.removeHandler(handler)
