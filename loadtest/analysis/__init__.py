"""From a run directory's journals alone: reconciliation, timings, summary, reports.

Nothing here talks to a server or imports Locust; any run directory can be re-analysed.
"""
