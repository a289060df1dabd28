"""The key-value API: a hidden ``_do_kv`` table that user SQL cannot see."""

from durable_objects import serialization
from durable_objects.conf import get_config

_CHUNK = 500  # bound parameters per statement, below SQLite's limit


def prefix_range(prefix):
    """The key range ``(low, high)`` of the keys starting with prefix: low <= key < high.

    high is None where no string bounds them (a prefix of only U+10FFFF characters).
    """
    return prefix, _prefix_end(prefix)


def prefix_conditions(prefix):
    """[(SQL condition on ``key``, its parameter)] selecting the keys starting with prefix.

    A key range, exact and served by the key index (LIKE or GLOB would be neither).
    """
    low, high = prefix_range(prefix)
    conditions = [("key >= ?", low)]
    if high is not None:
        conditions.append(("key < ?", high))
    return conditions


def _prefix_end(prefix):
    """The smallest string greater than every string that starts with prefix."""
    for index in range(len(prefix) - 1, -1, -1):
        code = ord(prefix[index])
        if code < 0x10FFFF:
            code += 1
            if 0xD800 <= code <= 0xDFFF:  # skip surrogates, which UTF-8 cannot hold
                code = 0xE000
            return prefix[:index] + chr(code)
    return None


class KeyValueMixin:
    """Key-value methods of DurableObjectStorage; values are stored with msgpack."""

    # -- validation ----------------------------------------------------------------------

    @staticmethod
    def _check_key(key):
        if not isinstance(key, str):
            raise TypeError(f"Storage keys must be str, not {type(key).__name__}.")
        size = len(key.encode("utf-8", "surrogatepass"))
        limit = get_config()["MAX_KEY_SIZE"]
        if size > limit:
            raise ValueError(f"Key is {size} bytes; the limit is {limit} bytes (MAX_KEY_SIZE).")
        return key

    def _check_keys(self, keys):
        if isinstance(keys, str | bytes):
            raise TypeError("Pass a list of keys, not a single string.")
        return [self._check_key(key) for key in keys]

    def _encode_entry(self, key, value):
        self._check_key(key)
        try:
            blob = serialization.dumps(value)
        except TypeError as exc:
            raise TypeError(f"Value for key {key[:100]!r} is not storable: {exc}") from None
        size = len(key.encode()) + len(blob)
        limit = get_config()["MAX_ENTRY_SIZE"]
        if size > limit:
            raise ValueError(
                f"Key {key[:100]!r} plus its value is {size} bytes; the limit is {limit} "
                "bytes (MAX_ENTRY_SIZE)."
            )
        return key, blob

    # -- reads ---------------------------------------------------------------------------

    def get(self, key, default=None):
        """Return the value stored under key, or default."""
        self._check_key(key)
        shard = self._existing_shard()
        if shard is None:
            return default
        row = shard.execute("SELECT value FROM main._do_kv WHERE key = ?", (key,)).fetchone()
        return serialization.loads(row[0]) if row else default

    def get_many(self, keys):
        """Return a dict of the keys found, in the order asked."""
        keys = self._check_keys(keys)
        shard = self._existing_shard()
        if shard is None:
            return {}
        found = {}
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = shard.execute(
                f"SELECT key, value FROM main._do_kv WHERE key IN ({marks})", chunk
            )
            found.update(rows.fetchall())
        return {key: serialization.loads(found[key]) for key in keys if key in found}

    def list(
        self, *, start=None, start_after=None, end=None, prefix=None, reverse=False, limit=None
    ):
        """Return a dict of entries in key order; ``end`` is exclusive."""
        if start is not None and start_after is not None:
            raise ValueError("Pass start or start_after, not both.")
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            raise ValueError("limit must be a positive integer.")
        clauses, params = [], []
        if start is not None:
            clauses.append("key >= ?")
            params.append(self._check_key(start))
        if start_after is not None:
            clauses.append("key > ?")
            params.append(self._check_key(start_after))
        if end is not None:
            clauses.append("key < ?")
            params.append(self._check_key(end))
        if prefix:
            for condition, param in prefix_conditions(self._check_key(prefix)):
                clauses.append(condition)
                params.append(param)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        order = "DESC" if reverse else "ASC"
        sql = f"SELECT key, value FROM main._do_kv {where} ORDER BY key {order}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        shard = self._existing_shard()
        if shard is None:
            return {}
        rows = shard.execute(sql, params).fetchall()
        return {key: serialization.loads(value) for key, value in rows}

    # -- writes --------------------------------------------------------------------------

    def put(self, key, value):
        """Store value under key."""
        entry = self._encode_entry(key, value)
        self._shard().execute(
            "INSERT INTO main._do_kv(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            entry,
        )

    def put_many(self, entries):
        """Store every key and value of the mapping, all or nothing."""
        if not hasattr(entries, "items"):
            raise TypeError("put_many() takes a mapping of keys to values.")
        rows = [self._encode_entry(key, value) for key, value in entries.items()]
        self._shard().executemany(
            "INSERT INTO main._do_kv(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            rows,
        )

    def delete(self, key):
        """Delete key; return True if it existed."""
        self._check_key(key)
        shard = self._existing_shard()
        if shard is None:
            return False
        cursor = shard.execute("DELETE FROM main._do_kv WHERE key = ?", (key,))
        return cursor.rowcount > 0

    def delete_many(self, keys):
        """Delete the keys; return how many existed."""
        keys = self._check_keys(keys)
        shard = self._existing_shard()
        if shard is None:
            return 0
        deleted = 0
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            deleted += shard.execute(
                f"DELETE FROM main._do_kv WHERE key IN ({marks})", chunk
            ).rowcount
        return deleted
