"""The Channels consumer of an object's sockets (``durable_objects.routing`` makes its routes).

``consumer.py`` is ``DurableObjectConsumer``, one client connection; ``connect.py`` its
connect (which object, the refusals before it wakes, its accept).
"""

from .connect import NoSuchObject
from .consumer import FAREWELL_PATIENCE, DurableObjectConsumer

__all__ = ["FAREWELL_PATIENCE", "DurableObjectConsumer", "NoSuchObject"]
