"""The key-value API against a model dict (hypothesis), within one event and across events."""

from asgiref.sync import async_to_sync
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from durable_objects.testing import evict, run_in_durable_object
from tests.support.objects import Plain

# Keys from a small alphabet, so that operations meet each other's keys; a few code points
# far apart so that order by UTF-8 bytes and order by code points are both exercised.
keys = st.text(alphabet="ab\x01é\u20ac\U0001f600z", min_size=0, max_size=4)
values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=5,
)
list_options = st.fixed_dictionaries(
    {},
    optional={
        "start": keys,
        "start_after": keys,
        "end": keys,
        "prefix": keys,
        "reverse": st.booleans(),
        "limit": st.integers(1, 5),
    },
)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("put"), keys, values),
        st.tuples(st.just("get"), keys),
        st.tuples(st.just("delete"), keys),
        st.tuples(st.just("put_many"), st.dictionaries(keys, values, max_size=4)),
        st.tuples(st.just("get_many"), st.lists(keys, max_size=4)),
        st.tuples(st.just("delete_many"), st.lists(keys, max_size=4)),
        st.tuples(st.just("list"), list_options),
        st.tuples(st.just("delete_all")),
    ),
    max_size=25,
)


def model_list(
    model, start=None, start_after=None, end=None, prefix=None, reverse=False, limit=None
):
    found = sorted(
        key
        for key in model
        if (start is None or key >= start)
        and (start_after is None or key > start_after)
        and (end is None or key < end)
        and (not prefix or key.startswith(prefix))
    )
    if reverse:
        found.reverse()
    if limit is not None:
        found = found[:limit]
    return [(key, model[key]) for key in found]


def apply(storage, model, operation):
    """Apply operation to storage and to the model; return (storage's answer, model's)."""
    name, *args = operation
    if name == "put":
        storage.put(*args)
        model[args[0]] = args[1]
        return None, None
    if name == "get":
        return storage.get(args[0]), model.get(args[0])
    if name == "delete":
        return storage.delete(args[0]), model.pop(args[0], _MISSING) is not _MISSING
    if name == "put_many":
        storage.put_many(args[0])
        model.update(args[0])
        return None, None
    if name == "get_many":
        return storage.get_many(args[0]), {k: model[k] for k in args[0] if k in model}
    if name == "delete_many":
        expected = len({k for k in args[0] if k in model})
        for key in args[0]:
            model.pop(key, None)
        return storage.delete_many(args[0]), expected
    if name == "list":
        options = args[0]
        if "start" in options and "start_after" in options:  # refused, as documented
            try:
                storage.list(**options)
            except ValueError as exc:
                return str(exc), "Pass start or start_after, not both."
            return "no error", "Pass start or start_after, not both."
        return list(storage.list(**options).items()), model_list(model, **options)
    storage.delete_all()
    model.clear()
    return None, None


_MISSING = object()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations)
def test_key_value_api_behaves_like_a_sorted_dict(ops):
    stub = Plain.objects.get(Plain.objects.new_unique_id())
    model = {}

    def run(instance, ctx):
        answers = [apply(ctx.storage, model, op) for op in ops]
        return answers, list(ctx.storage.list().items())

    answers, stored = async_to_sync(run_in_durable_object)(stub, run)
    for op, (got, expected) in zip(ops, answers, strict=True):
        assert got == expected, op
    assert stored == model_list(model)
    # Committed: a new activation reads the same entries from the shard.
    async_to_sync(evict)(stub)
    after = async_to_sync(run_in_durable_object)(
        stub, lambda instance, ctx: list(ctx.storage.list().items())
    )
    assert after == model_list(model)
