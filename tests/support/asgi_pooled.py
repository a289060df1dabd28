"""The pooled-thread handler's test application: Django's HTTP through durable_objects.asgi.

Its views (``tests.support.views_threads``) report on the thread that ran a request's
sync work, so that the tests can tell a pooled thread from a new one per request.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.support.settings")

from durable_objects.asgi import get_asgi_application

application = get_asgi_application()
