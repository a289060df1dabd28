"""The connect of a client's socket: which object it is for, and whether it is let in.

``ConnectMixin`` is the part of ``DurableObjectConsumer`` that runs once per socket: the
route's name or ``object_id(scope)`` resolved to an object's ID, the refusals that
come before any object wakes (too many sockets from one client, a refused name, too
many new objects), and the object's answer to the connect (accepted with its tags,
auto-response and message numbers, or refused with a close code). The consumer
provides ``_submit``, ``_farewell_to_object``, ``_leave``, ``send`` and
``_close_frame``. See docs/topics/websockets.md.
"""

import asyncio
import logging
import secrets

from durable_objects import clients
from durable_objects.events.errors import encode_exception, is_unreachable
from durable_objects.ids import DurableObjectId
from durable_objects.sockets import presence
from durable_objects.sockets.events import (
    SocketClose,
    SocketConnect,
    upgrade_request,
    user_snapshot,
)
from durable_objects.sockets.protocol import (
    CLOSE_ABNORMAL,
    CLOSE_BAD_ROUTE,
    CLOSE_INTERNAL_ERROR,
    CLOSE_NOT_FOUND,
    CLOSE_OBJECT_MOVED,
    CLOSE_TOO_MANY,
    REASON_BAD_ROUTE,
    REASON_INTERNAL_ERROR,
    REASON_NOT_FOUND,
    REASON_OBJECT_MOVED,
    REASON_TOO_MANY_OBJECTS,
    REASON_TOO_MANY_SOCKETS,
    Sequence,
    group_name,
)

logger = logging.getLogger("durable_objects.sockets")


class NoSuchObject(Exception):
    """The route refused the name (``valid_name``) or ``object_id(scope)`` returned None."""


class ConnectMixin:
    """Resolves the socket's object and settles its connect (see the module's docstring)."""

    def _resolve(self):
        from durable_objects.registry import registry

        cls = self.object_class
        if isinstance(cls, str):
            cls = registry.get(cls)
        if self.name_kwarg is not None:
            kwargs = self.scope.get("url_route", {}).get("kwargs", {})
            if self.name_kwarg not in kwargs:
                raise ValueError(f"The route has no URL kwarg {self.name_kwarg!r}.")
            return cls, self._id_from_name(cls, str(kwargs[self.name_kwarg]))
        found = self.object_id(self.scope)
        if found is None:
            raise NoSuchObject("object_id(scope) returned None.")
        if isinstance(found, DurableObjectId):
            if found.label != cls._meta.label:
                raise ValueError(f"object_id(scope) returned an ID of {found.label}.")
            if found.name is not None:
                self._check_name(found.name)
            return cls, found
        if isinstance(found, str):
            return cls, self._id_from_name(cls, found)
        raise TypeError(f"object_id(scope) must return a DurableObjectId or a name: {found!r}")

    def _id_from_name(self, cls, name):
        self._check_name(name)
        return cls.objects.id_from_name(name)

    def _check_name(self, name):
        if self.valid_name is not None and not self.valid_name(name):
            raise NoSuchObject(f"valid_name() refused the name {name[:80]!r}.")

    # -- connecting ----------------------------------------------------------------------

    async def websocket_connect(self, message):
        try:
            await self._connect()
        finally:
            self._settled.set()

    async def _connect(self):
        # Everything that may refuse the connection comes before the object is woken:
        # a refused name or client never constructs an object or creates its shard.
        client = clients.client_address(self.scope)
        if not clients.take_socket(client):
            logger.info("Refused a socket of %s: WEBSOCKET_MAX_PER_CLIENT reached.", client)
            await self._refuse(CLOSE_TOO_MANY, REASON_TOO_MANY_SOCKETS)
            return
        self.client = client
        try:
            self.cls, self.oid = self._resolve()
        except NoSuchObject as exc:
            logger.info("Refused a socket on %r: %s", self.scope.get("path"), exc)
            await self._refuse(CLOSE_NOT_FOUND, REASON_NOT_FOUND)
            return
        except Exception as exc:
            logger.info(
                "Refused a socket on %r: %s: %s", self.scope.get("path"), type(exc).__name__, exc
            )
            await self._refuse(CLOSE_BAD_ROUTE, REASON_BAD_ROUTE)
            return
        if not clients.allow_new_object(self.cls, self.oid, client):
            logger.info("Refused a socket of %s: NEW_OBJECTS_PER_CLIENT_PER_MINUTE.", client)
            await self._refuse(CLOSE_TOO_MANY, REASON_TOO_MANY_OBJECTS)
            return
        self.socket_id = secrets.token_hex(12)
        self.group = group_name(str(self.oid))
        await self.channel_layer.group_add(self.group, self.channel_name)
        presence.register(self.socket_id, self, str(self.oid))
        try:
            ok, value = await self._submit(
                SocketConnect,
                request=upgrade_request(self.scope),
                holder=presence.HOLDER,
                user=user_snapshot(self.scope),
                route=self.scope.get("url_route", {}).get("kwargs", {}),
            )
        except Exception as exc:  # CallTimeout: the object may still accept it later
            ok, value = False, encode_exception(exc)
            self._farewell_to_object(SocketClose, code=CLOSE_ABNORMAL, was_clean=False)
        if not ok or not value["accepted"]:
            await self._leave()
            if not ok:
                # The error's text stays here: it may tell a client about the code.
                logger.warning(
                    "The connect of a socket of %s failed: %s: %s",
                    self.oid,
                    value.get("type"),
                    value.get("message"),
                )
                if is_unreachable(value):
                    await self._refuse(CLOSE_OBJECT_MOVED, REASON_OBJECT_MOVED)
                else:
                    await self._refuse(CLOSE_INTERNAL_ERROR, REASON_INTERNAL_ERROR)
            else:
                await self._refuse(value["code"], value["reason"])
            return
        self.tags = frozenset(value["tags"])
        self.auto_response = value["auto_response"]
        self.sequence = Sequence(value["gen"], value["b"], value["d"])
        self.accepted = True
        await self.send({"type": "websocket.accept"})
        self.backlog.watch(self.base_send)
        self._refresher = asyncio.ensure_future(self._refresh_membership())

    async def _refuse(self, code, reason):
        """Accept and close at once, so that the browser sees the code (not a bare 403)."""
        self.closing = True
        await self.send({"type": "websocket.accept"})
        await self._close_frame(code, reason)

    async def _refresh_membership(self):
        """Re-join the group before the channel layer's group_expiry drops this socket."""
        expiry = getattr(self.channel_layer, "group_expiry", 86400)
        while True:
            await asyncio.sleep(max(1.0, expiry / 2))
            await self.channel_layer.group_add(self.group, self.channel_name)
