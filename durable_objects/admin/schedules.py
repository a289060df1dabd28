"""The admin's schedule actions: cancel a schedule, drop a queued task (POST, logged).

The detail page lists both (``operations.schedules_of``); these views change them inside
the object, as its other actions do, with the change permission and Django's CSRF check.
"""

from django.contrib import messages
from django.shortcuts import redirect

from .views import _act, _detail_url, _post_only, _record


def schedule_cancel(model_admin, request, object_id):
    record = _record(model_admin, request, object_id, "change")
    if refused := _post_only(request):
        return refused
    schedule_id = request.POST.get("id", "")
    if not schedule_id or len(schedule_id) > 200:
        messages.error(request, "No schedule id (of 1 to 200 characters) was given.")
        return redirect(_detail_url(record))
    _act(
        model_admin,
        request,
        record,
        "cancel_schedule",
        lambda method: (
            None if method is None else f"Cancelled schedule {schedule_id!r} ({method}())."
        ),
        lambda method: (
            f"The schedule {schedule_id!r} was cancelled."
            if method is not None
            else f"There was no schedule {schedule_id!r}; nothing was cancelled."
        ),
        schedule_id=schedule_id,
    )
    return redirect(_detail_url(record))


def task_drop(model_admin, request, object_id):
    record = _record(model_admin, request, object_id, "change")
    if refused := _post_only(request):
        return refused
    try:
        seq = int(request.POST.get("seq", ""))
    except ValueError:
        messages.error(request, "No queued task number was given.")
        return redirect(_detail_url(record))
    _act(
        model_admin,
        request,
        record,
        "drop_task",
        lambda method: None if method is None else f"Dropped queued task {seq} ({method}()).",
        lambda method: (
            f"The queued task {seq} was dropped."
            if method is not None
            else f"Task {seq} is not queued; nothing was dropped."
        ),
        seq=seq,
    )
    return redirect(_detail_url(record))
