"""Text from the outside world (argv, paths, output, config) made safe to show: valid
Unicode for JSON and XML, and inert on a terminal."""

from __future__ import annotations

import re


def printable(text: str) -> str:
    """`text` as valid Unicode: bytes that were not UTF-8 become `\\xNN`."""
    if text.isascii():
        return text
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that no undecodable byte made
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


# Control characters other than the newline: a command or step name carrying ESC
# sequences must not drive the terminal that shows the table.
_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def for_terminal(text: str) -> str:
    """`printable`, with control characters shown as `\\xNN` instead of acted on."""
    return _CONTROL.sub(escape_char, printable(text))


def escape_char(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group()):02x}"


def one_line(text: str) -> str:
    return " ".join(text.split())


def truncate(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."
