"""The base of every section of a scenario file: a typo in a key is an error, not a default.

A key the model does not know would otherwise be dropped without a word, and the drill
would run with the default the user meant to change.
"""

from __future__ import annotations

from pydantic import ConfigDict

from maildrill.numbers import CheckedModel


class StrictModel(CheckedModel):
    """Unknown keys are errors; so are infinite, NaN and huge numbers (maildrill.numbers)."""

    model_config = ConfigDict(extra="forbid")
