"""The hands-on notebook runs top to bottom (CI: offline, on a local TikTok copy, 2 epochs per model).

Parameters are injected by replacing the cell tagged ``parameters`` (papermill's convention); the working
folder is a temporary directory, so config_files/, data/ and results/ of the checkout stay untouched."""
from pathlib import Path

import ipykernel  # noqa: F401  (the kernel nbclient starts; a missing one should fail here, not in a cell)
import nbclient
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "hands_on_reproducibility.ipynb"
TIKTOK = ROOT.parent / "shared" / "data" / "tiktok"


@pytest.mark.skipif(not TIKTOK.exists(), reason="../shared/data/tiktok is absent")
def test_hands_on_notebook_executes(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    (cell,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    cell.source = "\n".join([f"DATASET = 'tiktok'", f"LOCAL_DATA = {str(TIKTOK)!r}", "EPOCHS = 2",
                             f"WORKDIR = {str(tmp_path / 'work')!r}", "REPO_URL = None"])
    client = nbclient.NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}})
    client.execute()  # raises CellExecutionError (with the cell's traceback) when any cell fails
    outputs = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "Test metrics of each model's configuration selected on validation" in outputs
    assert "external.LightGCNM: test Recall@20" in outputs and "external.LATTICE: test Recall@20" in outputs
    results = tmp_path / "work" / "results" / "tiktok_elliot"
    assert (results / "validation_recall.png").stat().st_size > 10_000
    histories = sorted(p.name for p in (results / "history").glob("*.tsv"))
    assert len(histories) == 2 and all(len(n.encode()) <= 255 for n in histories)
    assert any(n.startswith("LATTICE_modalities=visual-audio_loaders=VisualAttribute-AudioAttribute") for n in histories)
