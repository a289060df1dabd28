"""The demos' WebSocket messages: JSON objects with a "type", checked before any use.

A message that is not what the page sends (not text, too long, not JSON, nested deeper
than any page nests, not an object, a field of the wrong type or size) is refused with an
error message to its sender alone; nothing is stored and nothing is broadcast.
"""

import json
import re

from durable_objects.serialization import nesting_depth

NAME = re.compile(r"[A-Za-z0-9_-]{1,40}")  # rooms, boards, polls, flights, accounts
MAX_DEPTH = 8  # the deepest a page nests: a stroke's points are [[x, y], ...] in an object


class Refused(ValueError):
    """A message the object will not act on; str() is what the sender is told."""


def is_valid_name(name):
    return isinstance(name, str) and NAME.fullmatch(name) is not None


def parse(message, *, max_bytes):
    """Return the message as a dict with a str "type", or raise Refused."""
    if not isinstance(message, str):
        raise Refused("Send text frames holding JSON.")
    if len(message.encode()) > max_bytes:
        raise Refused(f"Message too large: at most {max_bytes} bytes.")
    data = parse_json(message)
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise Refused('Send a JSON object with a "type".')
    return data


def parse_json(message):
    """json.loads(message), or Refused: not JSON, or nested deeper than MAX_DEPTH.

    Thousands of nested brackets raise RecursionError inside json.loads (not a
    ValueError), and a value nested a few hundred deep can raise it again wherever it
    is walked: both are refused here, before any use.
    """
    try:
        data = json.loads(message)
    except RecursionError:
        raise Refused(f"Message nested too deeply: at most {MAX_DEPTH} levels.") from None
    except ValueError:  # UnicodeDecodeError (bytes) is one
        raise Refused("Message is not valid JSON.") from None
    if nesting_depth(data, MAX_DEPTH) > MAX_DEPTH:
        raise Refused(f"Message nested too deeply: at most {MAX_DEPTH} levels.")
    return data


def text(data, key, *, max_length, label=None):
    """data[key] as a stripped, non-empty str of at most max_length characters."""
    value = data.get(key)
    label = label or key
    if not isinstance(value, str):
        raise Refused(f"The {label} must be text.")
    value = value.strip()
    if not value:
        raise Refused(f"The {label} is empty.")
    if len(value) > max_length:
        raise Refused(f"The {label} is too long: at most {max_length} characters.")
    if any(ord(char) < 32 for char in value):
        raise Refused(f"The {label} contains control characters.")
    return value


def send(ws, kind, **fields):
    """Send {"type": kind, **fields} to one socket."""
    ws.send(json.dumps({"type": kind, **fields}))


def refuse(ws, error):
    send(ws, "error", message=str(error))


def dumps(kind, **fields):
    return json.dumps({"type": kind, **fields})
