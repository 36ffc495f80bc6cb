"""Print the config's JSON Schema: ``python -m gateway.config.schema > config/schema.json``.

The schema itself is built in schema_document.py; this module is only the command, so that running
it with -m does not import it twice (the package imports schema_document, never this).
"""

from __future__ import annotations

import sys

from gateway.config.schema_document import render_json_schema


def main() -> None:
    sys.stdout.write(render_json_schema())


if __name__ == "__main__":
    main()
