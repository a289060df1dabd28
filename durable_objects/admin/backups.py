"""The object page's database download and upload (docs/topics/backups.md).

Download needs the view permission, upload the change permission; both are written to
the admin's history. Each runs as events of the live instance (``durable_objects.backups``),
so it reaches the object in whichever process holds it.
"""

import re
import tempfile

from django import forms
from django.contrib import messages
from django.http import FileResponse
from django.shortcuts import redirect

from durable_objects.backups import aexport_to, aimport_object
from durable_objects.conf import get_config

from . import calls
from .calls import ObjectUnreachable, OperationFailed
from .views import _detail_url, _record, _render

# Bytes of a multipart request beyond the file itself (boundaries, headers, the token).
UPLOAD_OVERHEAD = 64 * 1024


class DatabaseUploadForm(forms.Form):
    database = forms.FileField(
        label="Database file",
        help_text="A SQLite file that export_object or the Download button wrote.",
    )


def download(model_admin, request, object_id):
    """Send a consistent copy of the object's database as a file."""
    record = _record(model_admin, request, object_id, "view")
    try:
        cls, oid = calls.object_id_of(record)
        spool = tempfile.TemporaryFile()  # noqa: SIM115  (FileResponse closes it)
        try:
            result = calls.run_unreachable_safe(aexport_to, cls, oid, spool)
        except BaseException:
            spool.close()
            raise
    except (ObjectUnreachable, OperationFailed) as exc:
        messages.error(request, f"The database could not be exported: {exc}")
        return redirect(_detail_url(record))
    spool.seek(0)
    model_admin.log_change(request, record, f"Downloaded the database ({result.size} bytes).")
    response = FileResponse(
        spool,
        as_attachment=True,
        filename=_file_name(record),
        content_type="application/vnd.sqlite3",
    )
    response["Content-Length"] = str(result.size)
    return response


def _file_name(record):
    who = record.name if record.name is not None else record.object_id
    return re.sub(r"[^\w.-]+", "_", f"{record.label}-{who}")[:150] + ".sqlite3"


def upload(model_admin, request, object_id):
    """Replace the object's database by an uploaded file, after a confirmation page."""
    record = _record(model_admin, request, object_id, "change")
    title = "Replace the database"
    error = None
    if request.method == "POST":
        limit = get_config()["MAX_IMPORT_SIZE"]
        length = _content_length(request)
        # Refused before Django reads the body (request.POST / FILES would read all of it).
        if limit is not None and (length is None or length > limit + UPLOAD_OVERHEAD):
            error = (
                f"The upload is {length} bytes; imports are limited to {limit} bytes "
                "(DURABLE_OBJECTS['MAX_IMPORT_SIZE']). The database is unchanged."
                if length is not None
                else "The upload has no Content-Length; it was refused unread."
            )
            form = DatabaseUploadForm()
            return _render(
                model_admin, request, record, "upload.html", title, 413, form=form, error=error
            )
        form = DatabaseUploadForm(request.POST, request.FILES)
        if form.is_valid():
            uploaded = form.cleaned_data["database"]
            try:
                cls, oid = calls.object_id_of(record)
                result = calls.run_unreachable_safe(aimport_object, cls, oid, uploaded)
            except (ObjectUnreachable, OperationFailed) as exc:
                error = f"{exc} The database is unchanged."
            else:
                model_admin.log_change(
                    request,
                    record,
                    f"Replaced the database by the uploaded file {uploaded.name!r} "
                    f"({result.size} bytes, from the database of {result.source_id}).",
                )
                messages.success(
                    request,
                    f"The database was replaced: {result.summary()}. The instance was reset.",
                )
                return redirect(_detail_url(record))
    else:
        form = DatabaseUploadForm()
    status = 400 if error else 200
    return _render(
        model_admin, request, record, "upload.html", title, status, form=form, error=error
    )


def _content_length(request):
    try:
        return int(request.META.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None
