"""Builds the gRPC stubs from metavec's proto/ into the package (metavec/v1/metavec_pb2*.py).

The proto is found through $METAVEC_PROTO_DIR, a proto/ copied next to this file, or the
repository's proto/ two levels up (`pip install ./clients/python` from a checkout). Nothing
generated is committed.
"""
import os
import pathlib

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = pathlib.Path(__file__).resolve().parent
REL = pathlib.Path("metavec", "v1", "metavec.proto")


def proto_root() -> pathlib.Path:
    candidates = [os.environ.get("METAVEC_PROTO_DIR"), HERE / "proto", HERE.parent.parent / "proto"]
    for c in candidates:
        if c and (pathlib.Path(c) / REL).is_file():
            return pathlib.Path(c)
    raise SystemExit(
        f"cannot find {REL}: set METAVEC_PROTO_DIR to metavec's proto/ directory "
        f"(looked in {[str(c) for c in candidates if c]})"
    )


class BuildWithStubs(build_py):
    def run(self):
        from grpc_tools import protoc

        root = proto_root()
        out = pathlib.Path(self.build_lib)
        out.mkdir(parents=True, exist_ok=True)
        rc = protoc.main(
            [
                "protoc",
                f"-I{root}",
                f"--python_out={out}",
                f"--grpc_python_out={out}",
                str(root / REL),
            ]
        )
        if rc != 0:
            raise SystemExit(f"protoc failed with exit code {rc}")
        super().run()


setup(cmdclass={"build_py": BuildWithStubs})
