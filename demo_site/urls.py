from django.contrib import admin
from django.urls import path
from django.views.generic import TemplateView

from demo_site import objectinfo
from demo_site.board import views as board_views
from demo_site.chat import views as chat_views
from demo_site.counter import views as counter_views
from demo_site.flights import views as flight_views
from demo_site.poll import views as poll_views
from demo_site.ratelimit import views as ratelimit_views
from demo_site.trial import views as trial_views

urlpatterns = [
    path("", TemplateView.as_view(template_name="demo_site/index.html"), name="index"),
    path("counter/<str:name>/", counter_views.counter, name="counter"),
    path("chat/<str:name>/", chat_views.room, name="chat"),
    path("board/<str:name>/", board_views.board, name="board"),
    path("poll/<str:name>/", poll_views.poll, name="poll"),
    path("flights/<str:code>/", flight_views.flight, name="flight"),
    path("flights/<str:code>/book/", flight_views.book, name="flight-book"),
    path("flights/<str:code>/cancel/", flight_views.cancel, name="flight-cancel"),
    path("trial/<str:name>/", trial_views.account, name="trial"),
    path("ratelimit/", ratelimit_views.page, name="ratelimit"),
    path("ratelimit/api/", ratelimit_views.api, name="ratelimit-api"),
    path("objects/<str:label>/<str:hex_id>/state/", objectinfo.state_view, name="object-state"),
    path("admin/", admin.site.urls),
]
