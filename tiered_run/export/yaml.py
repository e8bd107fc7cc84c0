"""Just enough YAML for the manifests we print: block mappings and sequences, scalars
quoted as JSON strings (which YAML reads as they are), so no YAML library is needed to
write one; the tests read them back with one."""

from __future__ import annotations

import json
import re

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")


def dump(value: object, indent: int = 0) -> str:
    return "".join(_lines(value, indent))


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    return json.dumps(str(value), ensure_ascii=False)


def _key(key: str) -> str:
    return key if _KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)


def _lines(value: object, indent: int) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, dict | list) and item:
                lines.append(f"{pad}{_key(key)}:\n")
                lines += _lines(item, indent + 2)
            else:
                lines.append(f"{pad}{_key(key)}: {_empty(item)}\n")
        return lines
    assert isinstance(value, list)
    for item in value:
        if isinstance(item, dict) and item:
            first, *rest = _lines(item, indent + 2)
            lines.append(f"{pad}- {first.lstrip()}")
            lines += rest
        else:
            lines.append(f"{pad}- {_empty(item)}\n")
    return lines


def _empty(item: object) -> str:
    if item == {}:
        return "{}"
    if item == []:
        return "[]"
    return _scalar(item)
