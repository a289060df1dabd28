"""The pages of one object: what it stores, the console, and the actions.

Every read and change runs inside the object's live instance (``calls.run``), so the
admin is one more caller: its events queue behind the others, commit with the epoch
fence, and reach the object in whichever process holds it. Permissions are the
catalog model's: view for the pages, change for editing an entry, the alarm and
eviction, delete for deleting an entry or all storage, and view plus
``use_sql_console`` for the console.
"""

import time
from datetime import UTC, datetime
from functools import partial

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseNotAllowed
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse

from durable_objects.models import ObjectRecord

from . import activity, calls
from .calls import ObjectUnreachable, OperationFailed
from .forms import ConsoleForm, EntryForm

CONSOLE_PERMISSION = "durable_objects.use_sql_console"
KV_PAGE = 50
TABLE_PAGE = 50
TEMPLATES = "admin/durable_objects/"


# -- helpers -----------------------------------------------------------------------------


def _record(model_admin, request, object_id, permission):
    try:
        record = get_object_or_404(ObjectRecord, pk=int(object_id))
    except ValueError:
        raise Http404(f"No durable object with catalog number {object_id!r}.") from None
    check = {
        "view": model_admin.has_view_or_change_permission,
        "change": model_admin.has_change_permission,
        "delete": model_admin.has_delete_permission,
        "console": partial(_may_use_console, model_admin),
    }[permission]
    if not check(request, record):
        raise PermissionDenied
    return record


def _may_use_console(model_admin, request, record=None):
    return model_admin.has_view_or_change_permission(request, record) and (
        request.user.has_perm(CONSOLE_PERMISSION)
    )


def _render(model_admin, request, record, template, title, status=200, **context):
    opts = model_admin.model._meta
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": opts,
        "record": record,
        "title": title,
        "page_name": None if template == "detail.html" else title,
        "detail_url": _detail_url(record),
        "can_change": model_admin.has_change_permission(request, record),
        "can_delete": model_admin.has_delete_permission(request, record),
        "can_use_console": _may_use_console(model_admin, request, record),
        "installed": calls.class_of(record) is not None,
        **context,
    }
    return TemplateResponse(request, TEMPLATES + template, context, status=status)


def _detail_url(record):
    return reverse("admin:durable_objects_objectrecord_change", args=[record.pk])


def _when(seconds):
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def _post_only(request):
    return None if request.method == "POST" else HttpResponseNotAllowed(["POST"])


def _act(model_admin, request, record, op, log, done, **args):
    """Run a changing operation, log it, and say how it went.

    log and done are messages, or functions of the result giving them; a log of None
    (nothing changed) is not written.
    """
    try:
        result = calls.run(record, op, write=True, **args)
    except (ObjectUnreachable, OperationFailed) as exc:
        messages.error(request, str(exc))
        return
    log = log(result) if callable(log) else log
    if log is not None:
        model_admin.log_change(request, record, log)
    messages.success(request, done(result) if callable(done) else done)


# -- pages -------------------------------------------------------------------------------


def detail(model_admin, request, object_id):
    """Everything about one object; opening it wakes the object if it was hibernated."""
    record = _record(model_admin, request, object_id, "view")
    where, holder = activity.status_of([record])[record.pk]
    after = request.GET.get("kv_after") or None
    prefix = request.GET.get("kv_prefix") or None
    overview, error, status = None, None, 200
    try:
        overview = calls.run(
            record, "overview", kv_after=after, kv_limit=KV_PAGE, kv_prefix=prefix
        )
    except ObjectUnreachable as exc:
        error, status = str(exc), 503
    except OperationFailed as exc:
        error, status = str(exc), 400
    alarm = None
    if overview and overview["alarm"]:
        alarm = {
            **overview["alarm"],
            **{
                f"{name}_time": _when(overview["alarm"].get(name))
                for name in ("scheduled_at", "due_at", "last_error_at", "last_fired_at")
            },
            "abandoned_time": _when(overview["alarm"].get("abandoned_at")),
        }
    if overview:
        for socket in overview["sockets"]:
            socket["accepted_time"] = _when(socket["accepted_at"])
        for schedule in overview["schedules"]["rows"]:
            schedule["due_time"] = _when(schedule["due_at"])
        for task in overview["schedules"]["queue"]:
            task["enqueued_time"] = _when(task["enqueued_at"])
            task["due_time"] = _when(task["due_at"])
    return _render(
        model_admin,
        request,
        record,
        "detail.html",
        str(record),
        status=status,
        overview=overview,
        error=error,
        where=activity.LABELS[where],
        where_code=where,
        holder=holder,
        alarm=alarm,
        kv_after=after,
        kv_prefix=prefix or "",
        console_form=ConsoleForm(initial={"sql": "SELECT * FROM sqlite_schema"}),
    )


def kv_value(model_admin, request, object_id):
    record = _record(model_admin, request, object_id, "view")
    key = request.GET.get("key", "")
    try:
        entry = calls.run(record, "kv_value", key=key)
    except (ObjectUnreachable, OperationFailed) as exc:
        return _render(model_admin, request, record, "kv_value.html", "Value", 503, error=exc)
    return _render(model_admin, request, record, "kv_value.html", f"Value of {key!r}", entry=entry)


def kv_edit(model_admin, request, object_id):
    record = _record(model_admin, request, object_id, "change")
    key = request.GET.get("key")
    notice = None
    if request.method == "POST":
        form = EntryForm(request.POST)
        if form.is_valid():
            key, value = form.cleaned_data["key"], form.cleaned_data["value"]
            try:
                existed = calls.run(record, "kv_put", write=True, key=key, value=value)
            except (ObjectUnreachable, OperationFailed) as exc:
                form.add_error(None, str(exc))
            else:
                verb = "Changed" if existed else "Added"
                model_admin.log_change(request, record, f"{verb} key-value entry {key!r}.")
                messages.success(request, f"{verb} the entry {key!r}.")
                return redirect(_detail_url(record))
    else:
        initial = {"key": key or ""}
        if key is not None:
            try:
                entry = calls.run(record, "kv_value", key=key)
            except (ObjectUnreachable, OperationFailed) as exc:
                return _render(
                    model_admin, request, record, "kv_edit.html", "Edit", 503, error=exc
                )
            if entry["found"] and entry["editable"] and not entry["truncated"]:
                initial["value"] = entry["text"]
            elif entry["found"]:
                notice = (
                    f"The stored value is a {entry['type']} that JSON cannot show exactly; "
                    "saving replaces it with the JSON value you type."
                )
        form = EntryForm(initial=initial)
    title = f"Edit entry {key!r}" if key else "Add an entry"
    return _render(model_admin, request, record, "kv_edit.html", title, form=form, notice=notice)


def kv_delete(model_admin, request, object_id):
    record = _record(model_admin, request, object_id, "delete")
    key = request.POST.get("key") if request.method == "POST" else request.GET.get("key")
    if key is None:
        messages.error(request, "No key was given to delete.")
        return redirect(_detail_url(record))
    if request.method == "POST":
        _act(
            model_admin,
            request,
            record,
            "kv_delete",
            lambda existed: f"Deleted key-value entry {key!r}." if existed else None,
            lambda existed: (
                f"Deleted the entry {key!r}."
                if existed
                else f"There was no entry {key!r}; nothing was deleted."
            ),
            key=key,
        )
        return redirect(_detail_url(record))
    try:
        entry = calls.run(record, "kv_value", key=key)
    except (ObjectUnreachable, OperationFailed) as exc:
        return _render(model_admin, request, record, "kv_delete.html", "Delete", 503, error=exc)
    return _render(
        model_admin, request, record, "kv_delete.html", f"Delete entry {key!r}?", entry=entry
    )


def table(model_admin, request, object_id):
    record = _record(model_admin, request, object_id, "view")
    name = request.GET.get("name", "")
    try:
        offset = max(0, int(request.GET.get("offset", 0)))
    except ValueError:
        offset = 0
    try:
        rows = calls.run(record, "table_rows", table=name, offset=offset, limit=TABLE_PAGE)
    except (ObjectUnreachable, OperationFailed) as exc:
        status = 503 if isinstance(exc, ObjectUnreachable) else 404
        return _render(model_admin, request, record, "table.html", name, status, error=exc)
    pages = {
        "previous": max(0, offset - TABLE_PAGE) if offset else None,
        "next": offset + TABLE_PAGE if offset + TABLE_PAGE < rows["count"] else None,
        "last": offset + len(rows["rows"]),
    }
    return _render(
        model_admin, request, record, "table.html", f"Table {name}", data=rows, pages=pages
    )


def console(model_admin, request, object_id):
    record = _record(model_admin, request, object_id, "console")
    result, error, status = None, None, 200
    if request.method == "POST":
        form = ConsoleForm(request.POST)
        if form.is_valid():
            try:
                result = calls.run(record, "console", sql=form.cleaned_data["sql"])
            except ObjectUnreachable as exc:
                error, status = str(exc), 503
            except OperationFailed as exc:
                error, status = str(exc), 400
    else:
        form = ConsoleForm(initial={"sql": "SELECT * FROM sqlite_schema"})
    return _render(
        model_admin,
        request,
        record,
        "console.html",
        "SQL console (read-only)",
        status,
        form=form,
        result=result,
        error=error,
    )


# -- actions -----------------------------------------------------------------------------


def alarm_run(model_admin, request, object_id):
    record = _record(model_admin, request, object_id, "change")
    if refused := _post_only(request):
        return refused
    from durable_objects.alarms.control import run_alarm_now

    try:
        ran = calls.run_unreachable_safe(run_alarm_now, *calls.object_id_of(record))
    except ObjectUnreachable as exc:
        messages.error(request, str(exc))
        return redirect(_detail_url(record))
    except OperationFailed as exc:  # the handler raised: recorded, and retried as usual
        model_admin.log_change(request, record, f"Ran the alarm now; it failed: {exc}")
        messages.error(request, f"The alarm ran and failed ({exc}); it will be retried.")
        return redirect(_detail_url(record))
    if ran:
        model_admin.log_change(request, record, "Ran the alarm now.")
        messages.success(request, "The alarm ran.")
    else:
        messages.warning(request, "The object has no alarm set; nothing ran.")
    return redirect(_detail_url(record))


def alarm_cancel(model_admin, request, object_id):
    record = _record(model_admin, request, object_id, "change")
    if refused := _post_only(request):
        return refused
    _act(
        model_admin,
        request,
        record,
        "cancel_alarm",
        lambda when: "Cancelled the alarm." if when is not None else None,
        lambda when: "The alarm was cancelled." if when else "There was no alarm to cancel.",
    )
    return redirect(_detail_url(record))


def evict(model_admin, request, object_id):
    record = _record(model_admin, request, object_id, "change")
    if refused := _post_only(request):
        return refused
    where, _ = activity.status_of([record])[record.pk]
    if where == activity.HIBERNATED:
        messages.info(request, "The object is not active anywhere; there was nothing to evict.")
        return redirect(_detail_url(record))
    try:
        calls.run(record, "evict", write=True)
    except OperationFailed as exc:
        messages.error(request, str(exc))
    except ObjectUnreachable as exc:
        # A stuck object does not let the evict run: past CALL_TIMEOUT the evict resets it
        # instead (admin/operations.py, force_after), and the wait here ends unanswered.
        if _hibernates_soon(record):
            model_admin.log_change(request, record, "Reset the stuck instance.")
            messages.success(
                request,
                "The object was stuck behind an event that did not finish, so it was reset: "
                "that event's uncommitted writes are lost, and the next call constructs it "
                "again.",
            )
        else:
            messages.error(request, str(exc))
    else:
        model_admin.log_change(request, record, "Evicted the instance.")
        messages.success(
            request, "The instance was evicted: it hibernates after the events it has queued."
        )
    return redirect(_detail_url(record))


def _hibernates_soon(record, within=2.0):
    """True if the object is, or within a moment becomes, active nowhere."""
    deadline = time.monotonic() + within
    while True:
        if activity.status_of([record])[record.pk][0] == activity.HIBERNATED:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def delete_storage(model_admin, request, object_id):
    record = _record(model_admin, request, object_id, "delete")
    if request.method != "POST":
        return _render(model_admin, request, record, "delete_storage.html", "Delete all storage?")
    _act(
        model_admin,
        request,
        record,
        "delete_storage",
        "Deleted all storage (entries, tables, alarm).",
        lambda counts: (
            f"Deleted {counts['entries']} entries and {counts['tables']} tables, and the alarm."
        ),
    )
    return redirect(_detail_url(record))
