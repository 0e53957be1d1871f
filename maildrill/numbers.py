"""Numbers a scenario or sink config may hold: finite, and small enough to compute with.

YAML reads `.inf`, `.nan` and `1.0e+400` (infinity) as floats and integers of any length
as Python ints; JSON bodies of the control API may carry NaN and Infinity too. Pydantic
passes huge integers, and a float field without `allow_inf_nan=False` passes infinity, so
a scenario could validate and then fail (or silently do nothing) at run time. Every model
of a scenario, a sink config and an effect's parameters derives from `CheckedModel`: one
rule, applied to the raw input before any field is read, so plain dict fields (a server's
`sink:` table, a fault's free parameters, Postfix settings) are covered like typed ones.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, model_validator

# Any number: at most 2^53 in size, where floats still hold every integer exactly and
# sums or products of a few such numbers cannot overflow.
MAX_NUMBER = 2**53
# Any time span (a stage, a drain, a fault, a timeout, a backoff), and a whole campaign.
MAX_DURATION_S = 7 * 24 * 3600


def number_problem(data: Any, path: str = "") -> str | None:
    """The first number in `data` (nested dicts and lists) that is not finite or too large,
    as 'path: problem'; None when all are fine. Strings are left to the fields' own types."""
    if isinstance(data, bool):
        return None
    where = f"{path}: " if path else ""
    if isinstance(data, float) and not math.isfinite(data):
        return f"{where}{data} is not a finite number"
    if isinstance(data, int | float) and abs(data) > MAX_NUMBER:
        shown = f"{data:.3g}" if isinstance(data, float) else f"an integer of {_digits(data)}"
        return f"{where}{shown} is too large (no number may exceed 2^53 = {MAX_NUMBER})"
    if isinstance(data, Mapping):
        for key, value in data.items():
            problem = number_problem(value, f"{path}.{key}" if path else str(key))
            if problem:
                return problem
    elif isinstance(data, list | tuple):
        for i, value in enumerate(data):
            problem = number_problem(value, f"{path}[{i}]")
            if problem:
                return problem
    return None


def _digits(n: int) -> str:
    """How long an integer is, without printing it (Python refuses str() past 4300 digits)."""
    return f"about {int(abs(n).bit_length() * math.log10(2)) + 1} digits"


def finite_float(text: str) -> float:
    """argparse type: a number on the command line, held to the same rule as in files."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    problem = number_problem(value)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return value


def show(value: float) -> str:
    """A number as a person wrote it: whole numbers in full, others short."""
    if isinstance(value, int) or (value.is_integer() and abs(value) < 1e16):
        return str(int(value))
    return f"{value:g}"


class CheckedModel(BaseModel):
    """Base of every validated model: no infinity or NaN in float fields, and no number
    anywhere in the input (nested models, dicts, lists) beyond MAX_NUMBER."""

    model_config = ConfigDict(allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _numbers_in_range(cls, data: Any) -> Any:
        """On the raw input, where the path to a bad number is whole."""
        problem = number_problem(data)
        if problem:
            raise ValueError(problem)
        return data

    @model_validator(mode="after")
    def _fields_in_range(self) -> Any:
        """On the values read, for numbers written as strings (YAML reads `1e300` as one)."""
        values = dict(self) | dict(self.model_extra or {})
        problem = number_problem({k: v for k, v in values.items() if not isinstance(v, BaseModel)})
        if problem:
            raise ValueError(problem)
        return self


@dataclass(frozen=True)
class AtMost:
    """A field's upper limit, named in its error and in the scenario reference."""

    limit: float
    unit: str
    why: str = ""

    def __call__(self, value: float) -> float:
        if value > self.limit:
            because = f" ({self.why})" if self.why else ""
            raise ValueError(
                f"{show(value)} is more than the limit of {show(self.limit)} {self.unit}{because}"
            )
        return value

    def __str__(self) -> str:
        return f"<= {show(self.limit)} {self.unit}"


def at_most(limit: float, unit: str, why: str = "") -> AfterValidator:
    """Annotated metadata for a field: 'N is more than the limit of L unit (why)'."""
    return AfterValidator(AtMost(limit, unit, why))


# A time span in seconds (or milliseconds), at most MAX_DURATION_S.
SECONDS_LIMIT = at_most(MAX_DURATION_S, "s", "7 days")
MILLIS_LIMIT = at_most(MAX_DURATION_S * 1000, "ms", "7 days")
Seconds = Annotated[float, SECONDS_LIMIT]
Millis = Annotated[float, MILLIS_LIMIT]
