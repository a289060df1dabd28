from django.apps import AppConfig


class RateLimitConfig(AppConfig):
    name = "demo_site.ratelimit"
    label = "ratelimit"
