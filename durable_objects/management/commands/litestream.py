"""``manage.py litestream``: write this machine's Litestream config and run the daemon."""

import os
import stat
import sys

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from durable_objects.storage.replication import (
    DaemonUnreachable,
    LitestreamClient,
    LitestreamNotFound,
    daemon_config,
    daemon_environment,
    litestream_binary,
    replication_settings,
)


class Command(BaseCommand):
    help = (
        "Write the config of this machine's Litestream daemon from "
        "DURABLE_OBJECTS['REPLICATION'] (its control socket, no static databases: hosts "
        "register each shard they open) and replace this process with "
        "`litestream replicate`."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--config-only",
            action="store_true",
            help="Write the config and print the command that runs the daemon; do not run it "
            "(for systemd and the like).",
        )
        parser.add_argument(
            "--print-config",
            action="store_true",
            help="Print the config on stdout; write nothing, run nothing.",
        )

    def handle(self, *args, config_only=False, print_config=False, **options):
        try:
            replication = replication_settings()
        except ImproperlyConfigured as error:
            raise CommandError(str(error)) from None
        if replication is None:
            raise CommandError(
                "Replication is off: set DURABLE_OBJECTS['REPLICATION'] = {'REPLICA_URL': ...} "
                "(docs/topics/replication.md)."
            )
        text = daemon_config(
            replication.socket, log_level=replication.log_level, retention=replication.retention
        )
        if print_config:
            self.stdout.write(text, ending="")
            return
        try:
            binary = litestream_binary(replication.litestream_bin)
        except LitestreamNotFound as error:
            raise CommandError(str(error)) from None
        self._refuse_second_daemon(replication.socket)

        replication.socket.parent.mkdir(parents=True, exist_ok=True)
        replication.config_path.parent.mkdir(parents=True, exist_ok=True)
        replication.config_path.write_text(text)
        command = [binary, "replicate", "-config", str(replication.config_path)]
        command.append("-no-expand-env")
        if config_only:
            self.stdout.write(f"Wrote {replication.config_path}. Run the daemon with:")
            self.stdout.write("  " + " ".join(command))
            return
        self.stdout.write(
            f"Starting Litestream with {replication.config_path}, control socket "
            f"{replication.socket}."
        )
        self.stdout.flush()
        sys.stderr.flush()
        os.execve(binary, command, daemon_environment())

    @staticmethod
    def _refuse_second_daemon(socket_path):
        """CommandError if a daemon answers on socket_path, or if it is not a socket.

        Litestream removes a socket file it finds, so a second daemon would take the
        first one's socket, and both would replicate to the same replica paths.
        """
        try:
            mode = socket_path.lstat().st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(mode):
            raise CommandError(
                f"{socket_path} exists and is not a socket: remove it, or set "
                "REPLICATION['SOCKET'] to another path."
            )
        try:
            info = LitestreamClient(socket_path, timeout=2.0).info()
        except DaemonUnreachable:
            return  # a stale socket file, left by a daemon that died: litestream replaces it
        raise CommandError(
            f"A Litestream daemon (pid {info.get('pid')}, version {info.get('version')}) "
            f"already listens on {socket_path}: stop it first. One daemon per machine."
        )
