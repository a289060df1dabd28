"""DurableObjectId: the 64-hex address of one object of one class."""

import hashlib
import re
import secrets

_HEX64 = re.compile(r"[0-9a-f]{64}")
_BODY_BYTES = 28
_CHECK_BYTES = 4


# Unicode category Cc, which no name may contain: exactly these 65 code points (the
# category is closed under Unicode's stability policy). One regex search instead of a
# category lookup per character: this runs on every get_by_name().
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def _check(label, body):
    """Bind an ID body to its class, so an ID of another class is recognised as foreign."""
    return hashlib.sha256(b"do-check\0" + label.encode() + b"\0" + body).digest()[:_CHECK_BYTES]


class DurableObjectId:
    """The ID of one object: ``str(id)`` is 64 lowercase hex characters.

    The first 28 bytes identify the object; the last 4 are a checksum over the class label
    and those bytes, which is how IDs of another class and typos are refused.
    """

    __slots__ = ("_hex", "label", "name")

    def __init__(self, label, hex_string, name=None):
        self.label = label
        self._hex = hex_string
        self.name = name

    @classmethod
    def from_name(cls, label, name):
        if not isinstance(name, str):
            raise TypeError(f"An object name must be a str, not {type(name).__name__}.")
        if not name:
            raise ValueError("An object name must not be empty.")
        if len(name.encode()) > 2048:
            raise ValueError("An object name must be at most 2048 bytes in UTF-8.")
        found = _CONTROL.search(name)
        if found is not None:
            bad = found.group()
            raise ValueError(
                f"An object name must not contain control characters; this one has "
                f"U+{ord(bad):04X}. Names are text: NUL, tabs, newlines and the other "
                "characters of Unicode category Cc are refused."
            )
        # No SECRET_KEY: the same (label, name) gives the same ID on every machine, forever.
        digest = hashlib.sha256(b"do-name\0" + label.encode() + b"\0" + name.encode())
        body = digest.digest()[:_BODY_BYTES]
        return cls(label, (body + _check(label, body)).hex(), name)

    @classmethod
    def unique(cls, label):
        body = secrets.token_bytes(_BODY_BYTES)
        return cls(label, (body + _check(label, body)).hex())

    @classmethod
    def from_string(cls, label, hex_string):
        if not isinstance(hex_string, str):
            raise TypeError(f"An object ID must be a str, not {type(hex_string).__name__}.")
        if not _HEX64.fullmatch(hex_string):
            raise ValueError(
                f"{hex_string[:80]!r} is not a valid object ID: "
                "expected 64 lowercase hexadecimal characters."
            )
        raw = bytes.fromhex(hex_string)
        if raw[_BODY_BYTES:] != _check(label, raw[:_BODY_BYTES]):
            raise ValueError(
                f"{hex_string!r} is not an ID of {label} (it belongs to another class)."
            )
        return cls(label, hex_string)

    def __str__(self):
        return self._hex

    def __repr__(self):
        name = f" name={self.name!r}" if self.name is not None else ""
        return f"<DurableObjectId {self.label} {self._hex}{name}>"

    def __eq__(self, other):
        if not isinstance(other, DurableObjectId):
            return NotImplemented
        return self.label == other.label and self._hex == other._hex

    def __hash__(self):
        return hash((self.label, self._hex))

    def equals(self, other):
        """Return True if both IDs address the same object (Cloudflare's ``id.equals()``)."""
        return self == other

    @property
    def key(self):
        """The (label, hex) pair the runtime indexes objects by."""
        return (self.label, self._hex)
