"""The by-value format of arguments, results and stored values: msgpack, never pickle."""

import msgpack

SUPPORTED = "None, bool, int, float, str, bytes, list, tuple and dict"


def _refuse(value):
    if isinstance(value, int):  # msgpack hands over ints beyond 64 bits
        raise TypeError(f"int {value} is too large to serialize; integers must fit in 64 bits.")
    raise TypeError(
        f"{type(value).__name__} is not serializable; durable objects accept {SUPPORTED}."
    )


def dumps(value):
    """Serialize value; raise TypeError for anything outside the supported types."""
    try:
        return msgpack.packb(value, default=_refuse, use_bin_type=True, strict_types=False)
    except OverflowError:
        raise TypeError("int is too large to serialize; integers must fit in 64 bits.") from None
    except ValueError as exc:  # msgpack raises ValueError for over-deep or over-long values
        raise TypeError(f"value is not serializable: {exc}") from None


def loads(data):
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False, use_list=True)
    except TypeError:
        # A map with tuple keys: msgpack has no tuples, so the keys come back as lists,
        # which cannot be dict keys. Rebuild them as tuples (the slow path, only here).
        return msgpack.unpackb(
            data, raw=False, strict_map_key=False, use_list=True, object_pairs_hook=_pairs
        )


def _hashable(value):
    if isinstance(value, list):
        return tuple(_hashable(item) for item in value)
    return value


def _pairs(pairs):
    return {_hashable(key): value for key, value in pairs}


def dumps_arguments(args, kwargs, describe=None):
    """Serialize a call's arguments; a TypeError names the argument that failed."""
    try:
        return dumps((args, kwargs))
    except TypeError:
        pass
    for index, value in enumerate(args):
        _check_argument(value, describe(index) if describe else f"positional argument {index}")
    for key, value in kwargs.items():
        _check_argument(value, f"argument {key!r}")
    raise TypeError("arguments are not serializable")


def _check_argument(value, label):
    try:
        dumps(value)
    except TypeError as exc:
        raise TypeError(f"{label}: {exc}") from None


def nesting_depth(value, limit):
    """How deeply lists and dicts nest in value (0 for a scalar), walked without recursion.

    Levels past limit are not walked: the answer is then limit + 1, enough to refuse it.
    """
    deepest, stack = 0, [(value, 1)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, dict | list):
            deepest = max(deepest, level)
            if level <= limit:
                children = value.values() if isinstance(value, dict) else value
                stack.extend((child, level + 1) for child in children)
    return deepest
