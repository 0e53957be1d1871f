"""What both halves of maildrill share: the journals' rows and cells, safe paths, checked
numbers, host names and addresses, and one-line input errors.

`sinks/` (the servers under test) and `loadtest/` (the senders, the orchestrator, the
analysis) both import from here; this package imports neither.
"""
