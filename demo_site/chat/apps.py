from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "demo_site.chat"
    label = "chat"
