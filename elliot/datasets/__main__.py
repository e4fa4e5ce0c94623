"""``python -m elliot.datasets list|info|fetch``: the dataset catalogue from the command line.

Errors (:class:`elliot.errors.ElliotError`) print one line on stderr and exit with status 2.
"""
from __future__ import annotations

import argparse
import sys

from elliot.errors import ElliotError


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--registry", help="YAML/JSON file of extra or replacement entries")
    p = argparse.ArgumentParser(prog="python -m elliot.datasets", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="print the catalogue", parents=[common])
    info = sub.add_parser("info", help="everything the catalogue knows about one dataset", parents=[common])
    info.add_argument("name")
    f = sub.add_parser("fetch", help="download, verify and unpack into ROOT/NAME/", parents=[common])
    f.add_argument("name")
    f.add_argument("--root", default="data", help="folder that receives NAME/ (default: data)")
    f.add_argument("--force", action="store_true", help="fetch again even when present; replace a foreign folder")
    f.add_argument("--from-local", nargs="?", const=True, default=None, metavar="PATH",
                   help="copy a local folder already in the final layout (no PATH: the entry's local copy)")
    f.add_argument("--link", action="store_true", help="with --from-local: symlink the files instead of copying")
    f.add_argument("--source", dest="source_override", metavar="FILE_OR_URL",
                   help="a local archive/file or a URL to use instead of the registry's (same checksum)")
    f.add_argument("--mirror", help="replace scheme and host of URL sources (default: $ELLIOT_DATASETS_MIRROR)")
    f.add_argument("--quiet", action="store_true", help="no progress bars")
    x = sub.add_parser("export-elliot", help="write ROOT/NAME in the Elliot forks' layout (train.txt, "
                       "image_feat/<item>.npy, ...)")
    x.add_argument("name")
    x.add_argument("--root", default="data", help="folder that holds NAME/ (default: data)")
    x.add_argument("--out", help="output folder (default: ROOT/NAME_elliot)")
    x.add_argument("--feature", action="append", default=[], metavar="MODALITY=FILE.npy",
                   help="a modality's feature matrix in ROOT/NAME (row r = item id r); repeatable")
    return p


def _list(reg) -> None:
    rows = []
    for name in reg.names():
        e = reg.get(name)
        kinds = "+".join(sorted({s.kind for s in e.sources}))
        algos = sorted({s.checksum.split(":")[0] for s in e.sources if s.checksum})
        check = "manual" if e.manual else ("+".join(algos) if e.verified else "none")
        rows.append((name, kinds, check, e.title))
    widths = [max(len(r[i]) for r in rows + [("name", "source", "checksum", "")]) for i in range(3)]
    print(f"{'name':<{widths[0]}}  {'source':<{widths[1]}}  {'checksum':<{widths[2]}}  title")
    for r in rows:
        print(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}")


def _info(e) -> None:
    print(f"{e.name}: {e.title}")
    for s in e.sources:
        print(f"  {'source':<12}{s.kind} {s.label}  checksum={s.checksum}  unpack={s.unpack}"
              + (f" -> {s.dest}" if s.dest else ""))
    print(f"  {'layout':<12}{', '.join(k + (' (sha256 known)' if v else '') for k, v in e.layout.items())}")
    for key in ("postprocess", "licence", "citation", "homepage", "notes", "local", "config_hint"):
        value = getattr(e, key)
        if value:
            print(f"  {key:<12}{', '.join(value) if isinstance(value, tuple) else value}")


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        from elliot.datasets.fetch import fetch_dataset
        from elliot.datasets.registry import load_registry

        if args.command == "export-elliot":
            from pathlib import Path

            from elliot.datasets.elliot_layout import export_elliot_layout

            features = dict(f.split("=", 1) for f in args.feature if "=" in f) or None
            bad = [f for f in args.feature if "=" not in f]
            if bad:
                raise ElliotError(f"--feature {bad[0]!r}: write MODALITY=FILE.npy, e.g. visual=image_feat.npy")
            export_elliot_layout(Path(args.root) / args.name, args.out or Path(args.root) / f"{args.name}_elliot",
                                 features=features, name=args.name)
            return 0
        reg = load_registry(args.registry)
        if args.command == "list":
            _list(reg)
        elif args.command == "info":
            _info(reg.get(args.name))
        else:
            fetch_dataset(args.name, args.root, force=args.force, from_local=args.from_local, link=args.link,
                          source_override=args.source_override, mirror=args.mirror, registry=reg,
                          quiet=args.quiet, log=print)
    except ElliotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted (nothing was installed)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
