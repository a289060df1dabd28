from asgiref.sync import async_to_sync

from tests.objects import Counter, Relay


async def test_counter_counts_in_one_instance():
    stub = Counter.objects.get_by_name("smoke")
    assert await stub.increment() == 1
    assert await stub.increment(2) == 3
    assert await stub.value() == 3


def test_sync_code_calls_through_async_to_sync():
    stub = Counter.objects.get_by_name("sync")
    assert async_to_sync(stub.increment)() == 1
    assert async_to_sync(stub.increment)() == 2


async def test_call_chain_back_into_the_caller_completes():
    assert await Relay.objects.get_by_name("a").ask_back("b") == "pong"
