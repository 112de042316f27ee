"""Generate Python code, type stubs and gRPC stubs from protos/ into gen/.

Generated code is not committed; `make proto` (and every target that needs it)
recreates it. `-I protos` keeps import paths equal to proto packages, so
`cohortflow.ingest.v1.ingest_pb2` imports `cohortflow.types.v1.types_pb2` as is.

Only protos/cohortflow/ is generated: protos/google/rpc/ holds Google's error protos verbatim
for foreign clients; in Python they come from the googleapis-common-protos package.
"""

from __future__ import annotations

import shutil
import sys
from importlib.resources import files
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "protos"
OUT = ROOT / "gen"


def main() -> int:
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir()
    protos = sorted(str(p.relative_to(SRC)) for p in (SRC / "cohortflow").rglob("*.proto"))
    well_known = str(files("grpc_tools") / "_proto")
    args = [
        "grpc_tools.protoc",
        f"-I{SRC}",
        f"-I{well_known}",
        f"--python_out={OUT}",
        f"--pyi_out={OUT}",
        f"--grpc_python_out={OUT}",
        *protos,
    ]
    if protoc.main(args) != 0:
        print("protoc failed", file=sys.stderr)
        return 1
    # Regular packages all the way down, so setuptools' editable finder and mypy see them.
    for directory in [OUT / "cohortflow", *(OUT / "cohortflow").rglob("*")]:
        if directory.is_dir():
            (directory / "__init__.py").touch()
    print(f"generated {len(protos)} proto files into {OUT.relative_to(ROOT)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
