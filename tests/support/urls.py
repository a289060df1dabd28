from django.contrib import admin
from django.urls import path

from tests.support import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("tally/<str:name>/increment/", views.tally_increment),
    path("tally/<str:name>/slow-increment/", views.tally_slow_increment),
    path("tally/<str:name>/", views.tally_state),
    path("ledger/<str:name>/add/", views.ledger_add),
    path("ledger/<str:name>/", views.ledger_state),
]
