"""The list's filters: class, has an alarm, active or hibernated."""

from django.contrib import admin

from durable_objects.registry import registry

from . import activity


class ClassFilter(admin.SimpleListFilter):
    """Objects of one DurableObject class (the installed classes, by label)."""

    title = "class"
    parameter_name = "label"

    def lookups(self, request, model_admin):
        return [(label, label) for label in sorted(cls._meta.label for cls in registry.all())]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(label=self.value())
        return queryset


class HasAlarmFilter(admin.SimpleListFilter):
    title = "alarm"
    parameter_name = "alarm"

    def lookups(self, request, model_admin):
        return [("yes", "Has an alarm"), ("no", "No alarm")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(alarm_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(alarm_at__isnull=True)
        return queryset


class StatusFilter(admin.SimpleListFilter):
    """Live (in this process or, in a cluster, anywhere) or hibernated."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [("active", "Active"), ("hibernated", "Hibernated")]

    def queryset(self, request, queryset):
        if self.value() not in ("active", "hibernated"):
            return queryset
        ids = list(activity.active_ids())
        if self.value() == "active":
            return queryset.filter(object_id__in=ids)
        return queryset.exclude(object_id__in=ids)
