"""Objects for the export, import and copy tests: SQL rows, entries and an alarm."""

from durable_objects import DurableObject


class Archive(DurableObject):
    """Notes in a SQL table, entries in key-value storage, and an alarm that records runs."""

    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        ctx.storage.sql.exec(
            "CREATE TABLE IF NOT EXISTS notes(id INTEGER PRIMARY KEY, body TEXT NOT NULL)"
        )
        self.constructed_with = self.notes()  # what this instance saw when it was made

    def add(self, body, **entries):
        self.ctx.storage.sql.exec("INSERT INTO notes(body) VALUES (?)", body)
        self.ctx.storage.put_many(entries)

    def notes(self):
        return [row["body"] for row in self.ctx.storage.sql.exec("SELECT body FROM notes")]

    def seen_at_construction(self):
        return self.constructed_with

    def entries(self):
        return self.ctx.storage.list()

    def arm(self, when):
        self.ctx.storage.set_alarm(when)

    def alarm_time(self):
        return self.ctx.storage.get_alarm()

    def runs(self):
        return self.ctx.storage.get("alarm_runs", 0)

    async def alarm(self, info):
        self.ctx.storage.put("alarm_runs", self.ctx.storage.get("alarm_runs", 0) + 1)

    async def copy_onto_me(self, source_name):
        source = type(self).objects.id_from_name(source_name)
        await type(self).objects.acopy(source, self.ctx.id)

    async def copy_me_to(self, target_name):
        target = type(self).objects.id_from_name(target_name)
        return (await type(self).objects.acopy(self.ctx.id, target)).source_id

    def pid(self):
        import os

        return os.getpid()

    # -- point in time (issue 15, part 2) ------------------------------------------------

    async def bookmark(self):
        return await self.ctx.storage.get_current_bookmark()

    async def bookmark_for_time(self, when):
        return await self.ctx.storage.get_bookmark_for_time(when)

    async def restore_to(self, bookmark):
        return await self.ctx.storage.on_next_session_restore_bookmark(bookmark)

    async def restore_then_write(self, bookmark):
        await self.ctx.storage.on_next_session_restore_bookmark(bookmark)
        self.ctx.storage.put("after", True)  # storage is closed once the restore is made

    async def bookmark_in_atomic(self):
        with self.ctx.storage.atomic():
            self.ctx.storage.put("inside", True)
            return await self.ctx.storage.get_current_bookmark()
