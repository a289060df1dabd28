from django.apps import AppConfig


class TrialConfig(AppConfig):
    name = "demo_site.trial"
    label = "trial"
