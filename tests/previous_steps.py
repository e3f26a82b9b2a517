"""The steps encodings that earlier versions wrote into the online stores, as they wrote
them: rows holding them must still read the same (`codec.step_values`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from lykeion.features.view import FeatureView
from lykeion.stores.online.base import Step
from lykeion.stores.online.codec import _same, checked_steps, to_json, to_micros


def per_aggregation_json(
    view: FeatureView, steps: Sequence[Step], values: dict[str, Any] | None = None
) -> str | None:
    """The previous version's `encode_steps`, verbatim: per aggregation its changes in
    time order, `{feature: [[micros, value], ...]}`."""
    if not steps:
        return None
    previous: dict[str, Any] = {}
    if values is not None:
        previous = {
            name: to_json(type_, values.get(name))
            for name, type_ in view.aggregation_types.items()
            if name in values
        }
    changes: dict[str, list[list[Any]]] = {}
    for moment, step in steps:
        at = to_micros(moment)
        for name, value in checked_steps(view, step).items():
            if name in previous and _same(previous[name], value):
                continue
            previous[name] = value
            changes.setdefault(name, []).append([at, value])
    if not changes:
        return None
    return json.dumps(changes, separators=(",", ":"))


def whole_steps_json(view: FeatureView, steps: Sequence[Step]) -> str | None:
    """The first version's encoding: the list of whole steps `[[micros, {feature:
    value}], ...]` (its steps gave every aggregation)."""
    if not steps:
        return None
    return json.dumps([[to_micros(moment), checked_steps(view, step)] for moment, step in steps])
