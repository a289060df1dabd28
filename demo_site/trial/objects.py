"""The trial subscription: starting a trial sets the object's alarm; the alarm expires it.

The page holds a WebSocket to the account's object; the alarm handler broadcasts the new
plan, so an open page changes to "expired" without a reload. Beside the alarm, a schedule
(``ctx.schedule``, issue 16) sends a "trial ends in 1 minute" notice (half-way through a
trial of a minute or less); subscribing or resetting cancels it.
"""

import time

from django.http import HttpResponse

from demo_site import protocol
from demo_site.limits import SocketRates
from durable_objects import DurableObject

MIN_SECONDS, MAX_SECONDS = 3, 24 * 3600
PLANS = ("none", "trial", "expired", "paid")
HISTORY = 20  # events of the account shown on the page
REMINDER_LEAD = 60  # seconds before the trial's end that the reminder is sent


class Subscription(DurableObject):
    class Meta:
        hibernate_after = 10

    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.rates = SocketRates(rate=2, burst=5)

    def fetch(self, request):
        if not protocol.is_valid_name(self.ctx.id.name):
            return HttpResponse("No such account.", status=404)
        self.ctx.accept_websocket(request.websocket)
        protocol.send(request.websocket, "state", **self.state())
        return HttpResponse(status=101)

    def state(self):
        """The plan, when the trial ends (UNIX seconds) and the account's recent events."""
        storage = self.ctx.storage
        return {
            "plan": storage.get("plan", "none"),
            "ends_at": storage.get("ends_at"),
            "alarm": storage.get_alarm(),
            "reminder": (self.ctx.get_schedule("reminder") or {}).get("time"),
            "events": storage.get("events", []),
            "now": time.time(),
        }

    def websocket_message(self, ws, message):
        try:
            data = protocol.parse(message, max_bytes=200)
            action = {
                "start": self._start,
                "subscribe": self._subscribe,
                "reset": self._reset,
            }.get(data["type"])
            if action is None:
                raise protocol.Refused(f"Unknown message type {data['type'][:20]!r}.")
            if not self.rates.allow(ws):
                raise protocol.Refused(self.rates.message)
            action(data)
        except protocol.Refused as error:
            protocol.refuse(ws, error)
            return
        self._publish()

    def websocket_close(self, ws, code, reason, was_clean):
        self.rates.forget(ws)

    def _start(self, data):
        seconds = data.get("seconds")
        if type(seconds) is not int or not MIN_SECONDS <= seconds <= MAX_SECONDS:
            raise protocol.Refused(
                f"The trial lasts a whole number of seconds, {MIN_SECONDS} to {MAX_SECONDS}."
            )
        plan = self.ctx.storage.get("plan", "none")
        if plan in ("trial", "paid"):
            raise protocol.Refused(f"This account is on the {plan} plan already.")
        ends_at = time.time() + seconds
        self.ctx.storage.put_many({"plan": "trial", "ends_at": ends_at})
        self.ctx.storage.set_alarm(ends_at)
        lead = REMINDER_LEAD if seconds > REMINDER_LEAD else seconds / 2
        left = "1 minute" if lead == REMINDER_LEAD else f"{lead:g} s"
        self.ctx.schedule(seconds - lead, "remind", f"The trial ends in {left}.", id="reminder")
        self._log(
            f"Trial started for {seconds} s; the alarm is set for its end, a reminder for "
            f"{left} before it."
        )

    def _subscribe(self, data):
        if self.ctx.storage.get("plan", "none") == "paid":
            raise protocol.Refused("This account is on the paid plan already.")
        self.ctx.storage.put_many({"plan": "paid", "ends_at": None})
        self.ctx.storage.delete_alarm()
        self.ctx.cancel_schedule("reminder")
        self._log("Subscribed: the alarm and the reminder are deleted.")

    def _reset(self, data):
        self.ctx.storage.put_many({"plan": "none", "ends_at": None})
        self.ctx.storage.delete_alarm()
        self.ctx.cancel_schedule("reminder")
        self._log("Account reset.")

    def remind(self, text):
        """The reminder schedule's run: a notice on every open page while still on trial."""
        if self.ctx.storage.get("plan") != "trial":
            return  # subscribed or reset after the reminder's run was under way
        # A one-shot schedule is deleted when its run ends; deleting it now keeps it out of
        # the state this run broadcasts.
        self.ctx.cancel_schedule("reminder")
        self._log(f"Reminder: {text}")
        self._publish()

    def alarm(self, info):
        """The trial's end: the plan becomes expired, and every open page hears it."""
        storage = self.ctx.storage
        if storage.get("plan") != "trial":
            return  # subscribed or reset meanwhile (their alarm was deleted; a late retry)
        ends_at = storage.get("ends_at")
        if ends_at is not None and time.time() < ends_at:
            storage.set_alarm(ends_at)  # early: run again at the end
            return
        storage.put("plan", "expired")
        retry = f" (retry {info.retry_count})" if info.is_retry else ""
        self._log(f"The alarm fired{retry}: the trial has expired.")
        self._publish()

    def _log(self, text):
        events = self.ctx.storage.get("events", [])
        events = [*events, {"at": time.time(), "text": text}][-HISTORY:]
        self.ctx.storage.put("events", events)

    def _publish(self):
        self.ctx.broadcast(protocol.dumps("state", **self.state()))
