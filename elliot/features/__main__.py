"""``python -m elliot.features --config FILE``: extract item features from raw images and texts.

Errors (:class:`elliot.errors.ElliotError`) print one line on stderr and exit with status 2.
"""
from __future__ import annotations

import argparse
import sys


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m elliot.features", description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="YAML file with a features: section (Ducho's shape)")
    p.add_argument("--only", choices=["visual", "textual"], help="run one modality only")
    p.add_argument("--device", help="override the file's device (cpu, cuda, cuda:N)")
    p.add_argument("--threads", type=int, help="torch CPU threads while encoding (default: the file's, else torch's)")
    p.add_argument("--force", action="store_true", help="extract again even when the cache says nothing changed")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    from elliot.errors import ElliotError

    try:
        from elliot.features import load_jobs, run_job

        jobs = load_jobs(args.config, only=args.only, device=args.device)
        for job in jobs:
            job.threads = args.threads or job.threads
        results = [run_job(job, force=args.force, quiet=args.quiet, log=print) for job in jobs]
    except ElliotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted (outputs already written are complete; the rest was not written)", file=sys.stderr)
        return 130
    print("side_information entries for an experiment file:")
    for r in results:
        print("  - " + "{" + ", ".join(f"{k}: {v}" for k, v in r.side_information().items()) + "}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
