from django.contrib import admin
from django.urls import path
from django.views.generic import TemplateView

from demo_site.chat import views as chat_views
from demo_site.counter import views as counter_views

urlpatterns = [
    path("", TemplateView.as_view(template_name="demo_site/index.html"), name="index"),
    path("counter/<slug:name>/", counter_views.counter, name="counter"),
    path("chat/<slug:name>/", chat_views.room, name="chat"),
    path("admin/", admin.site.urls),
]
