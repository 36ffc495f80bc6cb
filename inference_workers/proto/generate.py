"""Regenerate the committed gRPC modules in `inference_workers/grpc_gen/` from the .proto file.

    python -m inference_workers.proto.generate            # rewrite the committed modules
    python -m inference_workers.proto.generate --out DIR  # write DIR/inference_workers/grpc_gen/...

The proto directory is mapped onto the virtual path `inference_workers/grpc_gen/`, so the generated
modules import each other by their package path (`from inference_workers.grpc_gen import ...`) and
work without touching `sys.path`. A test regenerates into a temporary directory and compares the
result with the committed files byte for byte.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Final

PROTO_DIR: Final = Path(__file__).resolve().parent
PROTO_FILE: Final = PROTO_DIR / "open_inference_grpc.proto"
PACKAGE_PATH: Final = "inference_workers/grpc_gen"
GENERATED_FILES: Final = (
    "open_inference_grpc_pb2.py",
    "open_inference_grpc_pb2.pyi",
    "open_inference_grpc_pb2_grpc.py",
)
REPOSITORY_ROOT: Final = PROTO_DIR.parent.parent


def generate(out_root: Path) -> list[Path]:
    """Run protoc into `out_root`; returns the generated files."""
    from grpc_tools import protoc

    (out_root / PACKAGE_PATH).mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{PACKAGE_PATH}={PROTO_DIR}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        str(PROTO_FILE),
    ]
    status = protoc.main(args)
    if status != 0:
        raise RuntimeError(f"protoc failed with status {status}")
    return [out_root / PACKAGE_PATH / name for name in GENERATED_FILES]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", type=Path, default=REPOSITORY_ROOT, help="root to write the package path under"
    )
    args = parser.parse_args(argv)
    for path in generate(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
