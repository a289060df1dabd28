from django.apps import AppConfig


class CounterConfig(AppConfig):
    name = "demo_site.counter"
    label = "counter"
