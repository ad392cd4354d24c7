"""Safe ``{name}`` templates for user intents and hooks.

``str.format`` would let a config (or a slot value) reach attributes and format
specs (``{area.__class__}``, ``{x:>99999}``); here only ``{name}`` with a known
name is replaced, and everything else, JSON braces included, stays as written.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def placeholders(template: str) -> set[str]:
    """The names written as ``{name}`` in ``template``."""
    return set(PLACEHOLDER.findall(template))


def fill(
    template: str, values: Mapping[str, str], escape: Callable[[str], str] | None = None
) -> str:
    """``template`` with each ``{name}`` whose name is in ``values`` replaced.

    ``escape`` transforms each substituted value (URL quoting, topic-safe words).
    Unknown names and anything that is not a plain ``{name}`` stay as written.
    """

    def replace(found: re.Match[str]) -> str:
        name = found.group(1)
        if name not in values:
            return found.group(0)
        value = values[name]
        return escape(value) if escape is not None else value

    return PLACEHOLDER.sub(replace, template)


def fill_json(value: object, values: Mapping[str, str]) -> object:
    """A copy of a JSON-like value with every string in it filled."""
    if isinstance(value, str):
        return fill(value, values)
    if isinstance(value, list):
        return [fill_json(item, values) for item in value]
    if isinstance(value, dict):
        return {str(key): fill_json(item, values) for key, item in value.items()}
    return value


def json_strings(value: object) -> list[str]:
    """Every string inside a JSON-like value (for checking placeholders at load)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [text for item in value for text in json_strings(item)]
    if isinstance(value, dict):
        return [text for item in value.values() for text in json_strings(item)]
    return []
