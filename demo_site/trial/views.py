from django.conf import settings
from django.http import Http404
from django.shortcuts import render

from demo_site.objectinfo import object_panel
from demo_site.protocol import is_valid_name

from .objects import MAX_SECONDS, MIN_SECONDS, Subscription


def account(request, name):
    """The account page: start a trial, watch it expire live when the alarm fires."""
    if not is_valid_name(name):
        raise Http404("Account names are 1 to 40 letters, digits, '-' or '_'.")
    config = {
        "name": name,
        "seconds": settings.DEMO_TRIAL_SECONDS,
        "min": MIN_SECONDS,
        "max": MAX_SECONDS,
    }
    return render(
        request,
        "trial/account.html",
        {"name": name, "config": config, "obj": object_panel(Subscription, name)},
    )
