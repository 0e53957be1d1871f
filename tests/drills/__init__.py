"""Whole drills: `maildrill run` from scenario to report, real sinks and real Locust."""
