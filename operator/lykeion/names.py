"""Deterministic, bounded, collision-free names: a restarted operator finds its children
again, and no two objects (or two tenants) ever share one.

Every name derived from an object is built here, from the exact parts that identify it:

- `derived_name(base, *suffixes)`: child work names (pipeline runs, trainings, their
  Jobs). `base-suffix-...` when that is a DNS label of at most 63 characters; otherwise
  (too long, or `base` had to be rewritten, e.g. a dot in a Model name) a shortened base,
  then a hash of the exact parts, then the suffixes. So two different inputs never give
  the same name, and a name never exceeds the label limit.
- `table_name(namespace, name, uid, generation)`: a FeatureManifest's storage tables. The
  hash covers the exact namespace, name, object UID and generation, so namespace `a--b`
  with manifest `c` and namespace `a` with manifest `b--c` get different tables, and a
  recreated object (new UID) never reads its predecessor's tables.
- `registry_name(namespace, family, segment)`: MLflow experiment and registered-model
  names. The parts are DNS labels (no dots), so joining them with `.` is unambiguous.
"""

from __future__ import annotations

import hashlib
import json
import re

MAX_LABEL = 63
_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_RFC1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_NOT_LABEL_CHARS = re.compile(r"[^a-z0-9]+")
_NOT_TABLE_CHARS = re.compile(r"[^a-z0-9]+")
DIGEST_CHARS = 10
"""Hex digits of the hash in shortened names: 40 bits, so a clash among a million names
of one namespace has a chance of about 1 in 2 million."""


def digest(*parts: str | int) -> str:
    """Hex digest of the exact parts (their JSON list, so no joining can make two lists
    look alike), `DIGEST_CHARS` long."""
    text = json.dumps(list(parts), separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:DIGEST_CHARS]


def derived_name(base: str, *suffixes: str, limit: int = MAX_LABEL) -> str:
    """A DNS label (<= `limit` characters) for work derived from object `base`.

    `derived_name("rider-activity", "g1", "r2")` -> `rider-activity-g1-r2`;
    `derived_name("forward-default-1.0", "t1")` -> `forward-default-1-0-<hash>-t1`
    (the dot had to go, so the hash keeps `forward-default-1-0` apart). Suffixes must be
    DNS-label tokens chosen by the caller (e.g. `g3`, `r12`, `t1`); a caller uses a fixed
    number of suffixes, which makes plain names unambiguous. Raises ValueError when the
    suffixes alone leave no room for the hash.
    """
    for suffix in suffixes:
        if not re.fullmatch(r"[a-z0-9]+", suffix):
            raise ValueError(f"name suffix {suffix!r} must be lowercase letters and digits")
    plain = "-".join((base, *suffixes))
    if len(plain) <= limit and _LABEL.match(base):
        return plain
    tail = "-".join((digest(base, *suffixes), *suffixes))
    room = limit - len(tail) - 1
    if room < 1:
        raise ValueError(f"suffixes {suffixes} leave no room for a name within {limit}")
    head = _NOT_LABEL_CHARS.sub("-", base.lower()).strip("-")
    if not head or not head[0].isalpha():
        head = f"n-{head}" if head else "n"
    head = head[:room].rstrip("-")
    return check_label(f"{head}-{tail}")


def table_name(namespace: str, name: str, uid: str, generation: int) -> str:
    """Storage name of a FeatureManifest's tables in one generation:
    `<namespace>__<name>__g<generation>_<hash>` (lowercase letters, digits, underscores:
    valid in SQLite, DuckDB and BigQuery; Bigtable shortens it further, keeping a hash).

    The readable parts are for people; the hash of the exact (namespace, name, uid,
    generation) is what keeps tables of different tenants, objects and generations apart.
    """
    readable = "__".join(
        _NOT_TABLE_CHARS.sub("_", part.lower()).strip("_") for part in (namespace, name)
    )
    return f"{readable}__g{generation}_{digest(namespace, name, uid, generation)}"


def registry_name(namespace: str, family: str, segment: str) -> str:
    """MLflow experiment and registered-model name of a family/segment in a namespace:
    `<namespace>.<family>.<segment>`. All three are DNS labels, which hold no dot, so the
    name is unambiguous (and MLflow allows dots, not `/` or `:`)."""
    for part in (namespace, family, segment):
        if len(part) > MAX_LABEL or not _RFC1123_LABEL.match(part):
            raise ValueError(f"{part!r} is not a DNS label of at most {MAX_LABEL} characters")
    return f"{namespace}.{family}.{segment}"


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
