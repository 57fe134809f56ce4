"""Parse a JSON list of records and keep each record's exact text.

The engine stores every record's raw payload. Serialising a parsed record back to JSON costs as much as
parsing it did, so for the common envelope {"<key>": [ {...}, {...} ]} the records are decoded one by one
with the C scanner and their text is sliced out of the body as it was received.
"""

import json
import re

from syncplane.core.bulk import RawJSON

_decoder = json.JSONDecoder()
_SPACE = re.compile(r"[ \t\n\r]*")


def records_with_text(body: str, key: str) -> tuple[list, list[RawJSON]] | None:
    """(records, their texts) for a body shaped {"key": [...]} with nothing else; None for any other shape
    (the caller then parses it the ordinary way)."""
    head = re.match(r'\s*\{\s*"' + re.escape(key) + r'"\s*:\s*\[', body)
    if not head:
        return None
    records, texts = [], []
    at = _SPACE.match(body, head.end()).end()
    if body.startswith("]", at):
        at += 1
    else:
        while True:
            try:
                record, end = _decoder.raw_decode(body, at)
            except json.JSONDecodeError:
                return None
            records.append(record)
            texts.append(RawJSON(body[at:end]))
            at = _SPACE.match(body, end).end()
            if body.startswith(",", at):
                at = _SPACE.match(body, at + 1).end()
            elif body.startswith("]", at):
                at += 1
                break
            else:
                return None
    tail = _SPACE.match(body, at).end()
    if not body.startswith("}", tail) or body[tail + 1 :].strip():
        return None
    return records, texts
