import secrets

from django.core import signing
from django.http import Http404
from django.shortcuts import render

from demo_site.objectinfo import object_panel
from demo_site.protocol import is_valid_name

from .objects import CHOICES, QUESTION, VOTER_COOKIE, VOTER_SALT, Poll


def poll(request, name):
    """The poll page; it gives the browser a voter cookie (one vote, which it may change)."""
    if not is_valid_name(name):
        raise Http404("Poll names are 1 to 40 letters, digits, '-' or '_'.")
    choices = [{"key": key, "label": label} for key, label in CHOICES.items()]
    response = render(
        request,
        "poll/poll.html",
        {
            "name": name,
            "question": QUESTION,
            "choices": choices,
            "obj": object_panel(Poll, name),
        },
    )
    try:
        request.get_signed_cookie(VOTER_COOKIE, salt=VOTER_SALT)
    except (KeyError, signing.BadSignature):  # missing or tampered with: a new voter
        response.set_signed_cookie(
            VOTER_COOKIE,
            secrets.token_hex(16),
            salt=VOTER_SALT,
            max_age=365 * 24 * 3600,
            httponly=True,
            samesite="Lax",
        )
    return response
