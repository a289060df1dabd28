"""Hostile messages on the wire (issue 13, items 4 and 5): a cluster host keeps answering.

The codec is fuzzed in this process; the receive path is fuzzed on a real ``runobjects``
host (real Redis), by sending random and mutated messages straight to its channel over
the transport's channel layer, as anyone who can write to the Redis could.
"""

import asyncio
import json
import os
import subprocess
import sys
import threading
import time

import pytest
from asgiref.sync import async_to_sync
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from durable_objects import serialization
from durable_objects.conf import cluster_channel_layers
from durable_objects.events.errors import encode_exception
from durable_objects.http import encode_request
from durable_objects.transport import wire as codec
from tests.support.objects import Counter, Gated
from tests.support.servers import REPO, stop

# The wire's spellings (transport/wire.py), written out: a change to them is a change of
# the protocol between processes of different versions.
CALL, REPLY, BATCH = "do.call", "do.reply", "do.batch"

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# -- values and messages -----------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=True)
    | st.text(max_size=20)
    | st.binary(max_size=20)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
KEYS = ["type", "id", "reply", "label", "hex", "name", "hops", "kind", "fields", "chain"]
KEYS += ["messages", "ok", "value"]


def valid_calls(reply="specific.test!x"):
    """One well-formed CALL per kind that crosses (Counter's object "fuzz")."""
    hex_id = str(Counter.objects.id_from_name("fuzz"))
    socket = {"socket_id": "s1", "channel": "specific.x!y"}
    kinds = [
        ("call", {"method": "value", "payload": serialization.dumps_arguments((), {})}),
        ("fetch", {"request": encode_request("/")}),
        ("alarm", {"force": False}),
        ("socket_message", {**socket, "message": "hi", "auto_response_at": None}),
        ("socket_close", {**socket, "code": 1000, "reason": "", "was_clean": True}),
        ("socket_error", {**socket, "error": encode_exception(ValueError("x"))}),
        (
            "socket_connect",
            {**socket, "request": encode_request("/"), "holder": "h", "user": None, "route": {}},
        ),
        ("admin_operation", {"op": "overview", "args": {}}),
    ]
    return [
        {
            "type": CALL,
            "id": f"fuzz-{n}",
            "reply": reply,
            "label": "tests.Counter",
            "hex": hex_id,
            "name": "fuzz",
            "hops": 1,
            "kind": kind,
            "fields": fields,
            "chain": [],
        }
        for n, (kind, fields) in enumerate(kinds)
    ]


@st.composite
def mutated(draw, base):
    """A valid message with a key dropped, a value replaced, or a field of it changed."""
    message = json.loads(json.dumps(base, default=lambda b: {"__bytes__": b.hex()}))
    message = _restore_bytes(message)
    for _ in range(draw(st.integers(1, 3))):
        target = message
        if draw(st.booleans()) and isinstance(message.get("fields"), dict):
            target = message["fields"]
        keys = sorted(target) or ["type"]
        key = draw(st.sampled_from(keys) | st.text(max_size=6))
        action = draw(st.sampled_from(["drop", "replace", "replace"]))
        if action == "drop":
            target.pop(key, None)
        else:
            target[key] = draw(values)
    return message


def _restore_bytes(value):
    if isinstance(value, dict):
        if set(value) == {"__bytes__"}:
            return bytes.fromhex(value["__bytes__"])
        return {k: _restore_bytes(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_restore_bytes(v) for v in value]
    return value


random_messages = st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), values) | (
    st.fixed_dictionaries(
        {"type": st.sampled_from([CALL, REPLY, BATCH, "do.other"])},
        optional={key: values for key in KEYS[1:]},
    )
)


@st.composite
def hostile(draw):
    """A random message, a mutated valid one, or a batch of them."""
    base = draw(st.sampled_from(valid_calls()))
    one = random_messages | mutated(base)
    if draw(st.booleans()):
        return draw(one)
    return {"type": BATCH, "messages": draw(st.lists(one, max_size=4))}


# -- the codec ---------------------------------------------------------------------------


@FUZZ
@given(hostile())
def test_the_codec_refuses_what_it_cannot_rebuild_with_a_value_error_only(message):
    """Whatever arrives, the checks and the codec raise ValueError or give an event."""
    try:
        items = codec.batch_items(message)
    except ValueError:
        return
    for item in items:
        try:
            if isinstance(item, dict) and item.get("type") == REPLY:
                codec.check_reply(item)
                continue
            codec.check_call(item)
            codec.event_from_wire(item)
        except ValueError:
            pass


@pytest.mark.parametrize("message", valid_calls(), ids=lambda m: m["kind"])
def test_every_kind_of_a_well_formed_call_is_accepted(message):
    codec.check_call(message)
    event = codec.event_from_wire(message)
    assert event.kind == message["kind"]


@pytest.mark.parametrize(
    ("kind", "fields", "error"),
    [
        ("call", {"method": "value"}, "lacks the field 'payload'"),
        ("call", {"method": 3, "payload": b""}, "'method' must be str, not int"),
        ("call", {"method": "a b", "payload": b""}, "'a b' is not a method name"),
        ("call", {"method": "v", "payload": b"", "x": 1}, "unknown fields ['x']"),
        ("fetch", {"request": {"path": "/"}}, "must have exactly the keys"),
        ("alarm", {"force": "yes"}, "'force' must be bool, not str"),
        ("socket_close", {"socket_id": "s", "channel": "c", "code": 7}, "not a WebSocket"),
        ("socket_message", {"socket_id": ["s"], "channel": "c", "message": "m"}, "socket_id"),
        ("socket_error", {"socket_id": "s", "channel": "c", "error": {}}, "lacks 'type'"),
        ("admin_operation", {"op": "nope"}, "Unknown admin operation 'nope'"),
    ],
)
def test_malformed_fields_are_refused_with_what_is_wrong(kind, fields, error):
    message = {"kind": kind, "fields": fields, "chain": [], "name": None}
    with pytest.raises(ValueError) as info:
        codec.event_from_wire(message)
    assert error in str(info.value)


def test_a_call_chain_of_other_than_text_tokens_is_refused():
    message = {**valid_calls()[0], "chain": [["not", "hashable"]]}
    with pytest.raises(codec.MalformedMessage, match="'chain'"):
        codec.check_call(message)


def test_a_max_call_size_payload_is_refused(settings):
    settings.DURABLE_OBJECTS = {**settings.DURABLE_OBJECTS, "MAX_CALL_SIZE": 10}
    fields = {"method": "value", "payload": b"x" * 11}
    with pytest.raises(ValueError, match="the limit is 10"):
        codec.event_from_wire({"kind": "call", "fields": fields, "chain": []})


# -- a real cluster host -----------------------------------------------------------------


class RawWire:
    """A channel of this test's own on the transport layer: sends anything, reads replies."""

    def __init__(self, redis_url):
        from channels_redis.pubsub import RedisPubSubChannelLayer

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        config = cluster_channel_layers(redis_url)["transport"]["CONFIG"]
        self.layer = self.run(self._make(RedisPubSubChannelLayer, config))
        self.channel = self.run(self.layer.new_channel())

    async def _make(self, cls, config):
        return cls(**config)

    def run(self, coroutine, timeout=15):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def send(self, channel, message):
        self.run(self.layer.send(channel, message))

    def replies(self, count, timeout=10):
        """The next count replies on this channel, by id."""
        found = {}
        deadline = time.monotonic() + timeout
        while len(found) < count:
            left = deadline - time.monotonic()
            assert left > 0, f"only {len(found)} of {count} replies arrived: {found}"
            message = self.run(asyncio.wait_for(self.layer.receive(self.channel), left))
            for item in message["messages"] if message["type"] == BATCH else [message]:
                found[item["id"]] = item
        return found

    def close(self):
        self.run(self.layer.flush())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


class OneHost:
    """A runobjects process on its own Redis database, and its channel."""

    def __init__(self, root, redis_url):
        import redis

        client = redis.Redis.from_url(redis_url)
        client.flushall()
        client.set("do:boot", repr(time.time() - 3600))  # up for an hour, not a restart
        self.redis_url = redis_url
        self.log_path = root / "host.log"
        self.env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "DJANGO_SETTINGS_MODULE": "tests.support.cluster_settings",
            "DO_TEST_REDIS_URL": redis_url,
            "DO_TEST_DB": str(root / "db.sqlite3"),
            "DO_TEST_STORAGE_ROOT": str(root / "objects"),
        }
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "-v0"], cwd=REPO, env=self.env, check=True
        )
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", "runobjects"],
                cwd=REPO,
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        assert "Hosting objects" in self.process.stdout.readline()
        self.channel = self._channel(client)

    def _channel(self, client):
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            for key in client.scan_iter("do:host:*"):
                info = client.get(key)
                if info is not None and json.loads(info)["pid"] == self.process.pid:
                    return json.loads(info)["channel"]
            time.sleep(0.1)
        raise AssertionError("the runobjects host did not register its channel")

    def log(self):
        return self.log_path.read_text()

    def stop(self):
        stop(self.process)


@pytest.fixture(scope="module")
def host(tmp_path_factory, redis_url):
    one = OneHost(tmp_path_factory.mktemp("wire-host"), redis_url)
    yield one
    one.stop()


@pytest.fixture
def wire(host):
    raw = RawWire(host.redis_url)
    yield raw
    raw.close()


@pytest.fixture
def client(host, settings):
    """This test process as a client of the cluster: its stub calls go to the host."""
    settings.CHANNEL_LAYERS = cluster_channel_layers(host.redis_url)
    settings.DURABLE_OBJECTS = {
        **settings.DURABLE_OBJECTS,
        "PLACEMENT": "redis",
        "REDIS_URL": host.redis_url,
        "TRANSPORT_LAYER": "transport",
        "CLUSTER_ROLE": "client",
        "LEASE_TTL": 2.0,
        "HOST_HEARTBEAT": 0.3,
        "CALL_TIMEOUT": 5.0,
    }
    return host


def call(stub_method, *args):
    return async_to_sync(stub_method)(*args)


def test_a_reply_without_an_id_does_not_stop_the_host(client, wire):
    """The message that killed the receive loop: a REPLY lacking its fields."""
    stub = Counter.objects.get_by_name("after-bad-reply")
    assert call(stub.increment) == 1
    wire.send(client.channel, {"type": BATCH, "messages": [{"type": REPLY}]})
    wire.send(client.channel, {"type": BATCH, "messages": 7})
    wire.send(client.channel, {"type": REPLY, "id": ["unhashable"], "ok": True, "value": 1})
    assert call(stub.increment) == 2
    assert "Dropped a malformed message" in client.log()


def test_each_item_of_a_batch_is_handled_on_its_own(client, wire):
    good = valid_calls(reply=wire.channel)[0]
    batch = [{"type": REPLY}, {**good, "id": "good-1"}, 42, {**good, "id": "good-2"}]
    wire.send(client.channel, {"type": BATCH, "messages": batch})
    replies = wire.replies(2)
    assert replies["good-1"]["ok"] and replies["good-2"]["ok"]


def test_a_malformed_call_with_a_readable_reply_is_answered_with_the_error(client, wire):
    wire.send(client.channel, {"type": CALL, "id": "bad-1", "reply": wire.channel})
    good = valid_calls(reply=wire.channel)[0]
    wire.send(client.channel, {**good, "id": "bad-2", "hops": "1"})
    wire.send(client.channel, {**good, "id": "bad-3", "name": "not-the-name"})
    replies = wire.replies(3)
    for request in ("bad-1", "bad-2", "bad-3"):
        assert replies[request]["ok"] is False
    first, second, third = (replies[r]["value"] for r in ("bad-1", "bad-2", "bad-3"))
    assert first["type"] == "durable_objects.transport.wire.MalformedMessage"
    assert (
        "lacks ['chain', 'fields', 'hex', 'hops', 'kind', 'label', 'name']" in (first["message"])
    )
    assert "'hops' that must be int, not str" in second["message"]
    assert "is not the name of" in third["message"]


@FUZZ
@given(hostile())
def test_random_and_mutated_messages_leave_the_host_answering(client, wire, message):
    wire.send(client.channel, message)


def test_after_the_fuzzing_the_host_still_answers_a_real_call(client, wire):
    assert client.process.poll() is None
    stub = Counter.objects.get_by_name("after-fuzz")
    assert call(stub.increment) == 1
    good = valid_calls(reply=wire.channel)[0]
    wire.send(client.channel, {**good, "id": "still-1"})
    assert wire.replies(1)["still-1"]["ok"] is True


# -- item 5: only what a stub may call ---------------------------------------------------


def raw_call(wire, host, cls, name, method, request):
    payload = serialization.dumps_arguments((), {})
    message = {
        "type": CALL,
        "id": request,
        "reply": wire.channel,
        "label": cls._meta.label,
        "hex": str(cls.objects.id_from_name(name)),
        "name": name,
        "hops": 1,
        "kind": "call",
        "fields": {"method": method, "payload": payload},
        "chain": [],
    }
    wire.send(host.channel, message)
    return wire.replies(1)[request]


@pytest.mark.parametrize("method", ["_load", "__dir__", "__sizeof__", "fetch", "objects"])
def test_a_call_of_a_method_a_stub_cannot_call_is_refused(client, wire, method):
    stub = Gated.objects.get_by_name(f"private-{method}")
    assert call(stub.loaded_value) == 1
    reply = raw_call(wire, client, Gated, f"private-{method}", method, f"p-{method}")
    assert reply["ok"] is False
    assert reply["value"]["type"] == "builtins.AttributeError"
    assert reply["value"]["message"] == (
        f"tests.Gated has no public method {method!r} to call through a stub."
    )
    assert call(stub.loaded_value) == 1  # _load did not run again


def test_a_public_method_still_runs_over_the_raw_wire(client, wire):
    reply = raw_call(wire, client, Gated, "public", "loaded_value", "public-1")
    assert reply["ok"] is True and serialization.loads(reply["value"]) == 1


# -- the supervisor ----------------------------------------------------------------------


def test_a_receive_loop_that_dies_is_restarted(client, settings, wire):
    """This process as a host: its loop's handling is made to fail once, then calls work."""
    from durable_objects.runtime.lifecycle import get_host

    settings.DURABLE_OBJECTS = {**settings.DURABLE_OBJECTS, "CLUSTER_ROLE": "host"}
    host = get_host()
    placement = host.placement
    asyncio.run_coroutine_threadsafe(placement.ready(), host.loop).result(10)
    transport = placement.transport
    handle = transport.handle
    failures = []

    def fail_once(message):
        if not failures:
            failures.append(message)
            raise RuntimeError("a bug in the receive loop")
        handle(message)

    transport.handle = fail_once
    good = valid_calls(reply=wire.channel)[0]
    local = {"channel": transport.channel}
    wire.send(local["channel"], {**good, "id": "dies-1"})
    deadline = time.monotonic() + 10
    while not failures and time.monotonic() < deadline:
        time.sleep(0.05)
    assert failures
    wire.send(local["channel"], {**good, "id": "after-restart"})
    assert wire.replies(1)["after-restart"]["ok"] is True


class Suspended:
    """An awaitable that suspends once: a receive that has not returned yet."""

    def __await__(self):
        yield


def test_a_receive_loop_closed_with_its_event_loop_ends_quietly(caplog):
    """A supervisor closed while it waits (its loop gone, as at exit) does not log a death
    or try to sleep on a loop that is not running."""
    from durable_objects.transport import Transport

    async def waiting():
        await Suspended()

    transport = Transport.__new__(Transport)
    transport.channel = "a-channel"
    transport._receive = waiting
    supervisor = transport._supervise()
    supervisor.send(None)  # now suspended in the receive
    supervisor.close()  # the GeneratorExit of a coroutine collected with its loop
    assert "died" not in caplog.text


# -- item 6: RQ jobs are JSON, never pickles ---------------------------------------------


class Touch:
    """Unpickling this runs ``touch path``: what a hostile pickle in the queue would do."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_the_alarm_queue_and_its_jobs_are_json(settings, redis_url):
    import zlib

    import redis
    from rq.serializers import JSONSerializer

    from durable_objects.alarms.rq import get_queue, schedule_job

    settings.RQ_QUEUES = {"default": {"URL": redis_url}}  # even without SERIALIZER here
    queue = get_queue()
    assert queue.serializer is JSONSerializer
    hex_id = str(Counter.objects.id_from_name("json-job"))
    job = schedule_job(queue, "tests.Counter", hex_id, time.time() + 3600)
    data = redis.Redis.from_url(redis_url).hget(job.key, "data")
    function, _, args, _ = json.loads(zlib.decompress(data))
    assert function == "durable_objects.alarms.jobs.deliver"
    assert args[:2] == ["tests.Counter", hex_id]
    schedule_job(queue, "tests.Counter", hex_id, None)  # deleted with the JSON serializer


def test_a_pickled_job_in_the_queue_is_refused_not_run(host, tmp_path):
    import redis
    from rq import Queue
    from rq.serializers import DefaultSerializer

    from durable_objects.alarms.rq import WORKER_COMMAND

    connection = redis.Redis.from_url(host.redis_url)
    marker = tmp_path / "pickle-ran"
    hostile = Queue("default", connection=connection, serializer=DefaultSerializer)
    job = hostile.enqueue(print, Touch(marker))  # a job as RQ's default would write it
    with (tmp_path / "worker.log").open("w") as log:
        worker = subprocess.Popen(
            [sys.executable, "manage.py", *WORKER_COMMAND, "--burst"],
            cwd=REPO,
            env=host.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            code = worker.wait(60)  # --burst: it exits once the queue is empty
        finally:
            stop(worker)
    log_text = (tmp_path / "worker.log").read_text()
    assert not marker.exists(), log_text
    assert code == 0, log_text  # the worker survived the job
    assert connection.hget(job.key, "status") == b"failed", log_text
    assert job.id in Queue("default", connection=connection).failed_job_registry.get_job_ids()


def test_e019_the_alarm_queue_must_use_the_json_serializer(settings):
    from django.core.checks import Error

    from durable_objects.alarms.rq import RQAlarms

    expected = Error(
        "RQ_QUEUES['default'], the queue of the alarm jobs, does not use RQ's JSON "
        "serializer: pickled jobs read from Redis run code in whatever reads them.",
        hint="Add 'SERIALIZER': 'rq.serializers.JSONSerializer' to RQ_QUEUES['default'] "
        "and run the workers with 'manage.py rqworker --with-scheduler --serializer "
        "rq.serializers.JSONSerializer'.",
        id="durable_objects.E019",
    )
    for serializer in (None, "rq.serializers.DefaultSerializer", "pickle", "no.such.Thing"):
        config = {"URL": "redis://127.0.0.1:1/0"}
        if serializer is not None:
            config["SERIALIZER"] = serializer
        settings.RQ_QUEUES = {"default": config}
        found = [m for m in RQAlarms.check() if m.id == "durable_objects.E019"]
        assert found == [expected], serializer
    for serializer in ("rq.serializers.JSONSerializer", "json"):
        settings.RQ_QUEUES = {"default": {"URL": "redis://x", "SERIALIZER": serializer}}
        assert not [m for m in RQAlarms.check() if m.id == "durable_objects.E019"]
