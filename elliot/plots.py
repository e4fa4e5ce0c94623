"""``python -m elliot.plots RESULTS_DIR [--timestamp T]``: the plots (``plots/``) and ``report.html`` of a results
folder, from the files its writers wrote (any earlier run too).  ``RESULTS_DIR`` is one ``results/<dataset>/``
folder, or a folder of them (``results/``): each is done."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    from elliot.errors import ElliotError
    from elliot.results.html_report import write_plots_and_report

    parser = argparse.ArgumentParser(prog="python -m elliot.plots", description="Draw the plots (plots/) and report.html of a results folder from the files in it.")
    parser.add_argument("results_dir", help="results/<dataset>/ (or a folder holding several of them)")
    parser.add_argument("--timestamp", help="the run to show, e.g. 2026_12_01_20_54_21 (default: the newest)")
    args = parser.parse_args(argv)
    root = Path(args.results_dir)
    if not root.is_dir():
        print(f"error: {root}: no such folder", file=sys.stderr)
        return 2
    folders = [root] if (root / "performance").is_dir() else sorted(
        p for p in root.iterdir() if (p / "performance").is_dir())
    if not folders:
        print(f"error: {root}: not a results folder (no performance/ in it or in its subfolders)", file=sys.stderr)
        return 2
    failed = 0
    for folder in folders:  # one unreadable folder does not stop the others
        try:
            paths = write_plots_and_report(folder, args.timestamp)
        except ElliotError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
            continue
        print(f"{folder}: {len(paths) - 1} plot(s) in {folder / 'plots'}, report {paths[-1]}")
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
