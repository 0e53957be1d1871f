"""SMTP sinks that behave like receiving MTAs and fail on schedule or on command."""
