"""The coffee poll: one object per poll, one vote per voter, live counts in every tab."""

from django.core import signing
from django.http import HttpResponse

from demo_site import protocol
from demo_site.limits import SocketRates
from durable_objects import DurableObject

QUESTION = "How do you take your coffee?"
CHOICES = {
    "espresso": "Espresso",
    "flat-white": "Flat white",
    "cappuccino": "Cappuccino",
    "filter": "Filter",
    "tea": "Tea, thanks",
}
VOTER_COOKIE = "demo_voter"
VOTER_SALT = "demo_site.poll.voter"


class Poll(DurableObject):
    class Meta:
        hibernate_after = 10

    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        ctx.storage.sql.exec(
            "CREATE TABLE IF NOT EXISTS votes(voter TEXT PRIMARY KEY, choice TEXT NOT NULL)"
        )
        self.rates = SocketRates(rate=2, burst=5)

    def fetch(self, request):
        """A tab connects: its voter comes from the signed cookie the poll page set."""
        if not protocol.is_valid_name(self.ctx.id.name):
            return HttpResponse("No such poll.", status=404)
        try:
            voter = request.get_signed_cookie(VOTER_COOKIE, salt=VOTER_SALT)
        except (KeyError, signing.BadSignature):
            return HttpResponse("Open the poll's page first: it gives you a vote.", status=403)
        ws = request.websocket
        # The tag lets one voter's tabs all hear which choice is theirs.
        self.ctx.accept_websocket(ws, [f"voter:{voter}"])
        ws.serialize_attachment(voter)
        protocol.send(ws, "counts", **self.counts())
        protocol.send(ws, "yours", choice=self._choice_of(voter))
        return HttpResponse(status=101)

    def websocket_message(self, ws, message):
        try:
            data = protocol.parse(message, max_bytes=200)
            if data["type"] != "vote":
                raise protocol.Refused(f"Unknown message type {data['type'][:20]!r}.")
            choice = data.get("choice")
            if not isinstance(choice, str) or choice not in CHOICES:
                raise protocol.Refused(f"Choose one of: {', '.join(CHOICES)}.")
            if not self.rates.allow(ws):
                raise protocol.Refused(self.rates.message)
        except protocol.Refused as error:
            protocol.refuse(ws, error)
            return
        voter = ws.deserialize_attachment()
        self.ctx.storage.sql.exec(
            "INSERT INTO votes(voter, choice) VALUES (?, ?)"
            " ON CONFLICT(voter) DO UPDATE SET choice = excluded.choice",
            voter,
            choice,
        )
        self.ctx.broadcast(protocol.dumps("counts", **self.counts()))
        self.ctx.broadcast(protocol.dumps("yours", choice=choice), tag=f"voter:{voter}")

    def websocket_close(self, ws, code, reason, was_clean):
        self.rates.forget(ws)

    def counts(self):
        counts = dict.fromkeys(CHOICES, 0)
        for row in self.ctx.storage.sql.exec(
            "SELECT choice, count(*) AS n FROM votes GROUP BY choice"
        ):
            counts[row["choice"]] = row["n"]
        return {"counts": counts, "total": sum(counts.values())}

    def _choice_of(self, voter):
        rows = self.ctx.storage.sql.exec("SELECT choice FROM votes WHERE voter = ?", voter)
        row = next(iter(rows), None)
        return None if row is None else row["choice"]
