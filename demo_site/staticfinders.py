"""Django's static file finders, with a path outside the static directories not found.

runserver serves static files through ``ASGIStaticFilesHandler``, which turns only
``Http404`` into a response: the ``SuspiciousFileOperation`` that a finder raises for
``/static/..%2F..%2Fsettings.py`` became a 500. Here it is "not found", a 404.
"""

from django.contrib.staticfiles import finders
from django.core.exceptions import SuspiciousFileOperation


class _NotFoundOutside:
    def find(self, path, find_all=False, **kwargs):
        try:
            return super().find(path, find_all=find_all, **kwargs)
        except SuspiciousFileOperation:
            return []  # what Django's finders return for "not here", find_all or not


class FileSystemFinder(_NotFoundOutside, finders.FileSystemFinder):
    pass


class AppDirectoriesFinder(_NotFoundOutside, finders.AppDirectoriesFinder):
    pass
