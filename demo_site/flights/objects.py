"""Flight seat booking: one object per flight, so two bookings of a seat never interleave.

Each booking is an event of the flight's one live instance, run to its end before the
next starts: the second booking of a seat always finds the first one's row.
"""

import re
import time

from django.core import signing
from django.http import HttpResponse

from demo_site import protocol
from durable_objects import DurableObject

ROWS = 20
LETTERS = "ABCDEF"
SEAT = re.compile(rf"(?:[1-9]|1[0-9]|{ROWS})[{LETTERS}]")
MAX_PASSENGER = 40
MAX_SEATS_PER_BOOKER = 4
BOOKER_COOKIE = "demo_booker"
BOOKER_SALT = "demo_site.flights.booker"


def _refusal(message, status=409):
    return {"ok": False, "status": status, "error": message}


class Flight(DurableObject):
    class Meta:
        hibernate_after = 10

    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        ctx.storage.sql.exec(
            "CREATE TABLE IF NOT EXISTS seats(seat TEXT PRIMARY KEY,"
            " passenger TEXT NOT NULL, booker TEXT NOT NULL, booked_at REAL NOT NULL)"
        )

    def fetch(self, request):
        """A seat map connects: send it the booked seats, and which of them are its own."""
        if not protocol.is_valid_name(self.ctx.id.name):
            return HttpResponse("No such flight.", status=404)
        try:
            booker = request.get_signed_cookie(BOOKER_COOKIE, salt=BOOKER_SALT)
        except (KeyError, signing.BadSignature):
            booker = None
        ws = request.websocket
        self.ctx.accept_websocket(ws, [f"booker:{booker}"] if booker else [])
        protocol.send(ws, "seats", seats=self.seat_map(), mine=self._seats_of(booker))
        return HttpResponse(status=101)

    def seat_map(self):
        """{seat: passenger} of the booked seats."""
        rows = self.ctx.storage.sql.exec("SELECT seat, passenger FROM seats ORDER BY seat")
        return {row["seat"]: row["passenger"] for row in rows}

    def book(self, seat, passenger, booker):
        """Book seat for passenger; {"ok": True, ...} or {"ok": False, "error": ...}."""
        if not isinstance(seat, str) or not SEAT.fullmatch(seat):
            return _refusal(f"No such seat: rows 1-{ROWS}, letters {LETTERS}.", 400)
        if not isinstance(passenger, str) or not passenger.strip():
            return _refusal("Give the passenger's name.", 400)
        passenger = passenger.strip()
        if len(passenger) > MAX_PASSENGER or any(ord(c) < 32 for c in passenger):
            return _refusal(
                f"The passenger's name is at most {MAX_PASSENGER} printable characters.", 400
            )
        holder = self.ctx.storage.sql.exec(
            "SELECT booker FROM seats WHERE seat = ?", seat
        ).to_array()
        if holder:
            if holder[0]["booker"] == booker:
                return _refusal(f"Seat {seat} is already yours.")
            return _refusal(f"Sorry, seat {seat} has just been booked by someone else.")
        mine = self._seats_of(booker)
        if len(mine) >= MAX_SEATS_PER_BOOKER:
            return _refusal(f"You hold {len(mine)} seats already, the most one booker may.")
        self.ctx.storage.sql.exec(
            "INSERT INTO seats(seat, passenger, booker, booked_at) VALUES (?, ?, ?, ?)",
            seat,
            passenger,
            booker,
            time.time(),
        )
        self._announce(booker, seat, passenger)
        return {"ok": True, "seat": seat, "passenger": passenger}

    def cancel(self, seat, booker):
        """Give back a seat this booker holds."""
        if not isinstance(seat, str) or not SEAT.fullmatch(seat):
            return _refusal(f"No such seat: rows 1-{ROWS}, letters {LETTERS}.", 400)
        cursor = self.ctx.storage.sql.exec(
            "DELETE FROM seats WHERE seat = ? AND booker = ?", seat, booker
        )
        if cursor.rows_written == 0:
            return _refusal(f"Seat {seat} is not one of yours.")
        self._announce(booker, seat, None)
        return {"ok": True, "seat": seat}

    def _announce(self, booker, seat, passenger):
        self.ctx.broadcast(protocol.dumps("seat", seat=seat, passenger=passenger))
        self.ctx.broadcast(
            protocol.dumps("mine", seats=self._seats_of(booker)), tag=f"booker:{booker}"
        )

    def _seats_of(self, booker):
        if booker is None:
            return []
        rows = self.ctx.storage.sql.exec(
            "SELECT seat FROM seats WHERE booker = ? ORDER BY seat", booker
        )
        return [row["seat"] for row in rows]
