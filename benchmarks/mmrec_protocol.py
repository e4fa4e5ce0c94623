"""Write the MMRec-protocol copies of the bench configs: ``config_files/bench/mmrec_protocol/<name>.yml``.

    python benchmarks/mmrec_protocol.py [config_files/bench/<name>.yml ...]

Default: every ``*_tiktok.yml`` and ``*_lfm2k.yml`` of ``config_files/bench/``.  A copy is the original text
(its notes and grid kept) with ``data_config.item_catalogue: all`` and ``evaluation.mask_validation_in_test:
false`` added and the relative data paths one folder deeper; rerun after editing an original (the tests
check that every copy matches its original).
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "config_files" / "bench"
FOLDER = BENCH / "mmrec_protocol"

HEADER = ("# MMRec's evaluation protocol on a copy of ../{name}: data_config.item_catalogue: all (items without a\n"
          "# training interaction stay in the catalogue, ranked and relevant; cold-start metrics *_cold next to\n"
          "# the overall ones) and evaluation.mask_validation_in_test: false (only training items are masked at\n"
          "# test).  Everything else as in the original, whose notes follow.\n")


def mmrec_copy(text: str, name: str) -> str:
    """The MMRec-protocol text of a bench config ``name`` whose YAML is ``text``."""
    text = text.replace("../../../shared/", "../../../../shared/")
    out, catalogue, mask = [], False, False
    for line in text.splitlines():
        if re.match(r"^\s*(item_catalogue|mask_validation_in_test):", line):
            continue  # the copy sets both
        out.append(line)
        m = re.match(r"^(\s*)strategy: (fixed|mmrec|dataset|hierarchy)\s*(#.*)?$", line)
        if m and not catalogue:
            out.append(f"{m.group(1)}item_catalogue: all  # MMRec: every item of any split is ranked")
            catalogue = True
        m = re.match(r"^(\s*)evaluation:\s*(#.*)?$", line)
        if m and not mask:
            out.append(f"{m.group(1)}  mask_validation_in_test: false  # MMRec masks only training items at test")
            mask = True
    if not (catalogue and mask):
        raise ValueError(f"{name}: no data_config 'strategy:' line or no 'evaluation:' block to extend")
    return HEADER.format(name=name) + "\n".join(out) + "\n"


def main(argv=None) -> None:
    args = [Path(a) for a in (sys.argv[1:] if argv is None else argv)]
    paths = args or sorted([*BENCH.glob("*_tiktok.yml"), *BENCH.glob("*_lfm2k.yml")])
    FOLDER.mkdir(exist_ok=True)
    for path in paths:
        target = FOLDER / path.name
        target.write_text(mmrec_copy(path.read_text(), path.name))
        print(f"wrote {target.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
