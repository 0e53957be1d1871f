"""Pure tests: no sockets, no child processes (tests/unit/conftest.py refuses both)."""
