"""Profiles: which schedule a method trains with. `embedded` is the CPU-budget schedule of the
generated sets (each method's dataclass defaults); `reference` is the schedule of the method's
reference code, every value cited where that code defines it (repo@commit path:line), per dataset
family where the reference differs (PFENet's PASCAL and COCO configs). A method declares its
reference values as `PROFILES = {"reference": {"pascal": {...}, "coco": {...}}}` of `Cited`; a
setting the reference does not define (or our adaptation cannot take) is left at its default, and
the method's docstring says why. Records carry the profile and every resolved value with its
source; tables name the profile in their header and never mix two in one table."""
from __future__ import annotations

from dataclasses import dataclass

from bench.core.errors import BenchError

PROFILES = ("embedded", "reference")


@dataclass(frozen=True)
class Cited:
    value: object
    source: str  # "owner/repo@commit path:line", or "paper §x" / "choice: why" where no code defines it


def check_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise BenchError(f"unknown profile '{profile}'; use one of {', '.join(PROFILES)}")
    return profile


def profile_values(method_cls, profile: str, family: str) -> dict[str, Cited]:
    """The settings `profile` gives `method_cls` on a dataset of `family` ("pascal" | "coco");
    {} for `embedded` and for methods that declare no such profile (their defaults are used)."""
    if check_profile(profile) == "embedded":
        return {}
    table = getattr(method_cls, "PROFILES", {}).get(profile, {})
    return dict(table.get(family) or table.get("pascal") or {})


def as_record(values: dict[str, Cited]) -> dict:
    return {k: {"value": c.value, "source": c.source} for k, c in sorted(values.items())}
