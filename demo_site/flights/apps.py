from django.apps import AppConfig


class FlightsConfig(AppConfig):
    name = "demo_site.flights"
    label = "flights"
