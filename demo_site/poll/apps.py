from django.apps import AppConfig


class PollConfig(AppConfig):
    name = "demo_site.poll"
    label = "poll"
