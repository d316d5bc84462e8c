"""The notebooks, executed: a notebook that no longer runs fails the suite.

Each notebook's first code cell (tagged ``parameters``, papermill's convention) holds the
full-size settings a user runs. The test inserts a cell after it that overrides them with tiny
values (tagged ``injected-parameters``), executes the notebook with nbclient in a fresh kernel of
this interpreter with ``tmp_path`` as the working directory, and checks what it produced.

The committed notebooks carry no outputs (checked here too, without a kernel).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ("quickstart", "compression", "dqn")
KERNEL_NAME = "python3"
CELL_TIMEOUT_SECONDS = 600
# A model trained for 2 epochs on 30 validation images sits near chance with many close
# calls, so int8 may flip a few of them (one image is 0.033 of top-1): the export's parity
# gate keeps its default budget in the full-size run, and the tests compare figures instead.
TINY_MODEL_TOP1_DROP = 0.2

def _kernel_argv() -> list[str]:
    """The kernel command: this interpreter (so the kernel sees the same venv and edgeline).
    (IPython is pinned below 8.23, which needs a typing_extensions newer than tf-agents
    allows; see pyproject.toml.)"""
    return [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]


@pytest.fixture(scope="module")
def kernel_dir(tmp_path_factory) -> Path:
    """A kernelspec directory holding only ``python3`` -> this interpreter.

    Written per test session rather than found with ``jupyter kernelspec``: a user-wide or
    system ``python3`` kernel may point at another Python, and a fresh clone has none.
    """
    root = tmp_path_factory.mktemp("kernels")
    spec = root / KERNEL_NAME
    spec.mkdir()
    (spec / "kernel.json").write_text(json.dumps({
        "argv": _kernel_argv(),
        "display_name": "Python 3 (edgeline tests)",
        "language": "python",
    }))
    return root


def read_notebook(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)


def parameters_index(notebook) -> int:
    for index, cell in enumerate(notebook.cells):
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            return index
    raise AssertionError("no cell tagged 'parameters'")


def execute(name: str, tmp_path: Path, kernel_dir: Path, overrides: dict):
    """Run notebook ``name`` with ``overrides`` after its parameters cell; the executed
    notebook is also written to ``tmp_path`` for a look when it fails."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient

    notebook = read_notebook(name)
    source = "\n".join(f"{key} = {value!r}" for key, value in overrides.items())
    injected = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    notebook.cells.insert(parameters_index(notebook) + 1, injected)
    manager = AsyncKernelManager(
        kernel_name=KERNEL_NAME,
        kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernel_dir)]),
    )
    client = NotebookClient(notebook, km=manager, timeout=CELL_TIMEOUT_SECONDS,
                            resources={"metadata": {"path": str(tmp_path)}})
    try:
        client.execute()
    finally:
        nbformat.write(notebook, tmp_path / f"{name}.executed.ipynb")
    return notebook


def outputs_of(notebook, output_type: str | None = None) -> list:
    return [output for cell in notebook.cells if cell.cell_type == "code"
            for output in cell.get("outputs", [])
            if output_type is None or output.output_type == output_type]


def images_shown(notebook) -> int:
    return sum("image/png" in output.get("data", {}) for output in outputs_of(notebook))


def last_json(notebook) -> dict:
    """The JSON the notebook's last code cell prints (its summary)."""
    last = [cell for cell in notebook.cells if cell.cell_type == "code"][-1]
    text = "".join(o.get("text", "") for o in last.outputs if o.output_type == "stream")
    return json.loads(text[text.index("{"):])


# -- the committed notebooks ------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebook_is_clean_and_has_a_parameters_cell(name):
    notebook = read_notebook(name)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert parameters_index(notebook) == notebook.cells.index(code[0])
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]
    assert notebook.metadata["kernelspec"]["name"] == KERNEL_NAME


# -- executed ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_quickstart_runs_every_stage_and_the_tflite_model_runs_in_litert(tmp_path,
                                                                         kernel_dir):
    # The detector (MobileNet v2 + FPN) alone would take ~90 s here, mostly graph tracing:
    # its cells are left to the full-size run.
    notebook = execute("quickstart", tmp_path, kernel_dir, {
        "IMAGES_PER_CLASS": 6, "VALIDATION_IMAGES_PER_CLASS": 3, "CLASSIFIER": "cnn",
        "CLASSIFIER_OPTIONS": {"stage_widths": (8, 16)}, "CLASSIFIER_INPUT_SIZE": (32, 32),
        "CLASSIFIER_EPOCHS": 2, "TRAIN_DETECTOR": False, "DETECTION_TRAIN_IMAGES": 8,
        "DETECTION_VALIDATION_IMAGES": 4, "CALIBRATION_IMAGES": 16,
        "MAX_TOP1_DROP": TINY_MODEL_TOP1_DROP,
    })
    summary = last_json(notebook)
    work = tmp_path / "quickstart_work"
    for examples in ("images", "boxes"):
        assert json.loads((work / examples / "artifact.json").read_text())["type"] == "Examples"
    tflite = work / "export" / "model.tflite"
    assert tflite.stat().st_size == summary["tflite_bytes"] > 0
    report = json.loads((work / "export" / "export.json").read_text())
    # The notebook's own LiteRT loop scores the held-out images exactly as the export
    # stage's parity gate did on the same images.
    assert summary["tflite_images"] == report["parity"]["images"] == 30
    assert summary["tflite_top1"] == pytest.approx(report["parity"]["top1_export"])
    metrics = json.loads((work / "evaluate_classifier" / "metrics.json").read_text())
    assert summary["classifier_top1"] == pytest.approx(metrics["top1"])
    # sample images, training curve, confusion matrix
    assert images_shown(notebook) >= 3


@pytest.mark.slow
def test_compression_prunes_to_the_target_and_exports_int8(tmp_path, kernel_dir):
    notebook = execute("compression", tmp_path, kernel_dir, {
        "IMAGES_PER_CLASS": 10, "VALIDATION_IMAGES_PER_CLASS": 3, "TRAIN_EPOCHS": 2,
        "STAGE_WIDTHS": (8, 16), "FINE_TUNE_EPOCHS": 1, "PRUNE_EPOCHS": 2,
        "CALIBRATION_IMAGES": 16, "FRONTIER": False, "MAX_TOP1_DROP": TINY_MODEL_TOP1_DROP,
    })
    summary = last_json(notebook)
    assert summary["target_sparsity"] == 0.5
    # Pruned kernels hold the target fraction of zeros (to a rounding of the mask).
    assert summary["pruned_sparsity"] == pytest.approx(0.5, abs=0.02)
    tflite = tmp_path / "compression_work" / "export" / "model.tflite"
    assert tflite.stat().st_size == summary["int8_bytes"] > 0
    assert summary["int8_bytes"] < summary["float_bytes"]
    assert summary["tflite_input_dtype"] == "int8"
    assert images_shown(notebook) >= 1


@pytest.mark.slow
def test_dqn_learns_exports_and_the_tflite_policy_acts_the_same(tmp_path, kernel_dir,
                                                               repo_root):
    notebook = execute("dqn", tmp_path, kernel_dir, {
        "CONFIG": str(repo_root / "configs" / "cartpole_dqn.yaml"),
        "MAX_ENV_STEPS": 850, "INITIAL_COLLECT_STEPS": 100, "EVAL_INTERVAL": 1,
        "EVAL_EPISODES": 2, "PARITY_OBSERVATIONS": 100,
    })
    summary = last_json(notebook)
    assert summary["env_steps"] == 850
    assert summary["action_agreement"] == 1.0 == summary["notebook_action_agreement"]
    assert summary["evaluations"] >= 4
    assert (tmp_path / "dqn_work" / "policy" / "policy.tflite").is_file()
    assert images_shown(notebook) >= 1
