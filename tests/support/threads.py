"""Where blocking shard work ran: the thread of each call of a Shard method."""

import threading


def record_threads(monkeypatch, name):
    """Record the thread name of each call of Shard.<name> (the open, the claim)."""
    from durable_objects.storage.shard import Shard

    threads = []
    real = getattr(Shard, name)

    def recorded(shard, *args, **kwargs):
        threads.append(threading.current_thread().name)
        return real(shard, *args, **kwargs)

    monkeypatch.setattr(Shard, name, recorded)
    return threads
