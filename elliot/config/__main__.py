"""``python -m elliot.config schema > experiment.schema.json``: the experiment file's JSON Schema (draft-07),
for editors (VS Code's YAML extension: see README, "Editor support")."""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m elliot.config", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("schema", help="print the experiment file's JSON Schema (draft-07) to stdout")
    args = parser.parse_args(argv)
    if args.command == "schema":
        from elliot.config.json_schema import schema_text

        sys.stdout.write(schema_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
