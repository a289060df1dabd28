"""``ObjectRecordAdmin``: the list of objects and the URLs of their pages and actions."""

from functools import partial, update_wrapper

from django.contrib import admin
from django.shortcuts import redirect
from django.template.defaultfilters import filesizeformat
from django.urls import path

from durable_objects.models import ObjectRecord

from . import activity, backups, schedules, views
from .filters import ClassFilter, HasAlarmFilter, StatusFilter


@admin.register(ObjectRecord)
class ObjectRecordAdmin(admin.ModelAdmin):
    """Every object with storage, from the catalog; one object's page opens its shard."""

    list_display = (
        "object",
        "label",
        "short_id",
        "created_at",
        "last_active_at",
        "alarm_at",
        "size",
        "socket_count",
        "status",
    )
    list_display_links = ("object",)
    list_filter = (ClassFilter, HasAlarmFilter, StatusFilter)
    search_fields = ("name", "^object_id")
    search_help_text = "Search by name (any part) or ID (its beginning)."
    ordering = ("-last_active_at",)
    sortable_by = ("object", "label", "created_at", "last_active_at", "alarm_at", "size")
    list_per_page = 100
    # No COUNT(*) of the whole catalog on every page; the filtered count remains.
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER  # a COUNT per filter choice, over the whole catalog
    actions = None

    # -- columns ---------------------------------------------------------------------

    @admin.display(description="object", ordering="name")
    def object(self, record):
        return record.name if record.name is not None else f"(unnamed) {record.object_id[:12]}…"

    @admin.display(description="ID")
    def short_id(self, record):
        return f"{record.object_id[:16]}…"

    @admin.display(description="size on disk", ordering="size_bytes")
    def size(self, record):
        return filesizeformat(record.size_bytes)

    @admin.display(description="status")
    def status(self, record):
        state = getattr(record, "_do_status", (activity.UNKNOWN, None))[0]
        return activity.LABELS[state]

    def get_changelist_instance(self, request):
        changelist = super().get_changelist_instance(request)
        records = list(changelist.result_list)
        statuses = activity.status_of(records)
        for record in records:
            record._do_status = statuses[record.pk]
        changelist.result_list = records
        return changelist

    # -- permissions: catalog rows are written by hosts, never added by hand -----------

    def has_add_permission(self, request):
        return False

    # -- pages -----------------------------------------------------------------------

    def change_view(self, request, object_id, form_url="", extra_context=None):
        return views.detail(self, request, object_id)

    def delete_view(self, request, object_id, extra_context=None):
        return redirect("admin:durable_objects_objectrecord_delete_storage", object_id)

    def get_urls(self):
        def page(suffix, view):
            wrapped = update_wrapper(self.admin_site.admin_view(partial(view, self)), view)
            name = "durable_objects_objectrecord_" + suffix.replace("-", "_")
            return path(f"<int:object_id>/{suffix}/", wrapped, name=name)

        return [
            page("kv-value", views.kv_value),
            page("kv-edit", views.kv_edit),
            page("kv-delete", views.kv_delete),
            page("table", views.table),
            page("console", views.console),
            page("alarm-run", views.alarm_run),
            page("alarm-cancel", views.alarm_cancel),
            page("schedule-cancel", schedules.schedule_cancel),
            page("task-drop", schedules.task_drop),
            page("evict", views.evict),
            page("delete-storage", views.delete_storage),
            page("download", backups.download),
            page("upload", backups.upload),
            *super().get_urls(),
        ]
