"""Starts the real `metavec serve` (from $METAVEC_BIN, default the workspace's release build) on
a free port in a temporary data directory for each test module."""

import os
import pathlib
import subprocess
import tempfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def server():
    binary = os.environ.get("METAVEC_BIN", str(ROOT / "target" / "release" / "metavec"))
    if not os.access(binary, os.X_OK):
        pytest.skip(f"no metavec binary at {binary} (build it or set METAVEC_BIN)")
    with tempfile.TemporaryDirectory() as data:
        proc = subprocess.Popen(
            [binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", data],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "RUST_LOG": "warn"},
        )
        addr = None
        for line in proc.stdout:
            if line.startswith("metavec listening on "):
                addr = line.split()[-1]
                break
        if addr is None:
            proc.kill()
            raise RuntimeError("the server did not report its address")
        yield addr
        proc.terminate()
        proc.wait(timeout=30)
