from django.contrib import admin
from django.urls import include, path

from tests.support import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("threads/", include("tests.support.views_threads")),
    path("tally/<str:name>/increment/", views.tally_increment),
    path("tally/<str:name>/slow-increment/", views.tally_slow_increment),
    path("tally/<str:name>/", views.tally_state),
    path("ledger/<str:name>/add/", views.ledger_add),
    path("ledger/<str:name>/", views.ledger_state),
    path("archive/<str:name>/add/", views.archive_add),
    path("archive/<str:name>/bookmark/", views.archive_bookmark),
    path("archive/<str:name>/restore/", views.archive_restore),
    path("archive/<str:name>/", views.archive_state),
]
