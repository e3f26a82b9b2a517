"""Deterministic, bounded names for child objects: a restarted operator finds them again."""

from __future__ import annotations

import re

MAX_LABEL = 63
_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def child_name(*parts: str) -> str:
    """`child_name("forward", "default", "1.0", "train")` -> `forward-default-1-0-train`.

    Dots become dashes so the name is a DNS label (valid for Jobs, Pods and Services); a
    name over 63 characters is an error, never silently truncated (two models would clash).
    """
    name = "-".join(part.replace(".", "-").replace("_", "-").lower() for part in parts)
    if len(name) > MAX_LABEL:
        raise ValueError(f"child name {name!r} is {len(name)} characters; the limit is {MAX_LABEL}")
    return check_label(name)


def check_label(name: str) -> str:
    """`name` itself if it is a DNS label of at most 63 characters, else a ValueError."""
    if len(name) > MAX_LABEL or not _LABEL.match(name):
        raise ValueError(f"{name!r} is not a DNS label of at most {MAX_LABEL} characters")
    return name
