from django.apps import AppConfig


class BoardConfig(AppConfig):
    name = "demo_site.board"
    label = "board"
