"""Ingest on Beam's DaskRunner against a real dask.distributed cluster on 127.0.0.1.

The cluster is a scheduler and two single-threaded worker processes started as the
``dask scheduler`` / ``dask worker`` commands do (``python -m distributed.cli.dask_*``), from
an empty folder, with PYTHONPATH cleared, in a Python environment of their own: edgeline
reaches them as an installed (non-editable) package built from this tree, the way README's
"Scaling out" says to ship it, and the editable install that points at the source tree is not
visible there. Every test on it thus also proves the staging: the workers run the pipeline
without the source tree.

Each run on the cluster is compared with the same command on the DirectRunner: shards,
rejected.jsonl (and the other reports) byte for byte, and the counts.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import venv
from pathlib import Path

import pytest

import edgeline  # noqa: F401
from edgeline.components.ingest import cli, imagenet

REPO = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.slow


def run_cli(argv: list[str]) -> int:
    """The ingest subcommands on a parser of their own (the handler is the real one)."""
    parser = argparse.ArgumentParser(prog="edgeline")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def staged_environment(root: Path) -> Path:
    """A Python environment holding edgeline as a user's worker would: installed from this
    tree (not editable), beside the test environment's other packages. Its .pth lists the
    test environment's site-packages as a plain path, so the .pth files there (among them
    the editable install's finder, which maps ``edgeline`` to the source tree) are not run."""
    site = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--no-index", "--target", str(site), str(REPO)],
                   check=True, capture_output=True)
    env_dir = root / "env"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    env_python = env_dir / "bin" / "python"
    env_site = subprocess.run(
        [str(env_python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True).stdout.strip()
    Path(env_site, "staged.pth").write_text(f"{site}\n{sysconfig.get_paths()['purelib']}\n")
    return env_python


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """(scheduler address, client, staged package folder): a scheduler and two workers of one
    thread each, all started from an empty folder outside the source tree."""
    from dask.distributed import Client

    root = tmp_path_factory.mktemp("dask")
    python = staged_environment(root)
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    scheduler_file = root / "scheduler.json"
    log = open(root / "cluster.log", "wb")
    processes = [subprocess.Popen(
        [str(python), "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
         "--port", "0", "--no-dashboard", "--scheduler-file", str(scheduler_file)],
        cwd=elsewhere, env=env, stdout=log, stderr=log)]
    client = None
    try:
        deadline = time.monotonic() + 120
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        processes += [subprocess.Popen(
            [str(python), "-m", "distributed.cli.dask_worker", "--scheduler-file",
             str(scheduler_file), "--nworkers", "1", "--nthreads", "1", "--no-dashboard",
             "--local-directory", str(root / f"worker{i}")],
            cwd=elsewhere, env=env, stdout=log, stderr=log) for i in range(2)]
        client = Client(scheduler_file=str(scheduler_file), timeout=120)
        client.wait_for_workers(2, timeout=180)
        yield client.scheduler.address, client, root / "site"
    finally:
        if client is not None:
            client.close()
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        log.close()


def on_workers(client, expression: str) -> list:
    """``expression`` evaluated in each worker process (``eval`` travels by reference; a
    function of this module would not, the workers cannot import the tests)."""
    return list(client.run(eval, expression).values())


def direct_and_dask(argv: list[str], address: str, outputs: Path) -> tuple[Path, Path]:
    """The same ingest command on the DirectRunner and on the cluster."""
    direct, dask = outputs / "direct", outputs / "dask"
    assert run_cli([*argv, "--output", str(direct), "--workers", "1", "--no-progress"]) == 0
    assert run_cli([*argv, "--output", str(dask), "--no-progress", "--runner", "DaskRunner",
                    "--dask_client_address", address]) == 0
    return direct, dask


def assert_same_output(direct: Path, dask: Path) -> dict:
    """Every file byte for byte (but artifact.json, which names the runner in its
    fingerprint) and the counts; returns the counts."""
    names = sorted(p.name for p in direct.iterdir() if p.name != "artifact.json")
    assert names == sorted(p.name for p in dask.iterdir() if p.name != "artifact.json")
    assert any(name.endswith(".tfrecord") for name in names)
    for name in names:
        assert (direct / name).read_bytes() == (dask / name).read_bytes(), name
    counts = [json.loads((d / "artifact.json").read_text())["properties"]["splits"]
              for d in (direct, dask)]
    assert counts[0] == counts[1]
    return counts[0]


def imagenet_sets(root: Path, shared_data: Path, ingest_helpers) -> tuple[Path, Path, Path]:
    """The fault set's train/ (two classes, every fault) and a flat val/ of four
    ILSVRC2012_val files (one of a class not trained on), as a folder and as ILSVRC tars;
    and a CSV of their ground truth."""
    folder = root / "folder"
    ingest_helpers.write_fault_set(folder, shared_data)
    sample = ingest_helpers.imagenet_sample(shared_data)
    wnids = sorted(p.name for p in (folder / "train").iterdir())
    val = {f"ILSVRC2012_val_{n:08d}.JPEG": next((sample / wnid).iterdir()).read_bytes()
           for n, wnid in enumerate([*wnids, wnids[0], "n01484850"], start=1)}
    labels = root / "val_labels.csv"
    labels.write_text("".join(f"{name},{wnid}\n" for name, wnid in
                              zip(val, [*wnids, wnids[0], "n01484850"])))
    (folder / "val").mkdir()
    for name, data in val.items():
        (folder / "val" / name).write_bytes(data)
    tars = root / "tars"
    tars.mkdir()
    ingest_helpers.pack_ilsvrc_train_tar(folder / "train", tars / imagenet.TRAIN_TAR)
    ingest_helpers.pack_flat_tar(val, tars / imagenet.VAL_TAR)
    return folder, tars, labels


def test_workers_run_edgeline_installed_outside_the_source_tree(cluster, tmp_path, fault_set):
    """The staging: each worker imports edgeline from the installed package, has no
    PYTHONPATH and works in a folder outside the source tree, and runs the pipeline's
    DoFns (each loaded this run's plan)."""
    address, client, site = cluster
    for origin in on_workers(client, "__import__('edgeline').__file__"):
        assert Path(origin).is_relative_to(site) and not Path(origin).is_relative_to(REPO)
    assert on_workers(client, "__import__('os').environ.get('PYTHONPATH')") == [None, None]
    for cwd in on_workers(client, "__import__('os').getcwd()"):
        assert not Path(cwd).is_relative_to(REPO)
    source, _ = fault_set
    # Two shards a class folder's unit at least: both workers get work.
    assert run_cli(["ingest", "imagenet", str(source), "--output", str(tmp_path / "out"),
                    "--train-shards", "4", "--no-progress", "--runner", "DaskRunner",
                    "--dask_client_address", address]) == 0
    loaded = on_workers(client, "list(__import__('edgeline.components.ingest.plan', "
                                "fromlist=['_LOADED'])._LOADED)")
    assert any(any(".ingest-work-" in path for path in plans) for plans in loaded)


def test_imagenet_folder_on_dask_matches_the_direct_runner(cluster, tmp_path, shared_data,
                                                            ingest_helpers, monkeypatch):
    """Acceptance 1, ImageNet folder. The command runs from the data's folder with relative
    paths: the workers' working directory is another one."""
    address, _, _ = cluster
    folder, _, labels = imagenet_sets(tmp_path, shared_data, ingest_helpers)
    monkeypatch.chdir(tmp_path)
    argv = ["ingest", "imagenet", folder.name, "--val-labels", labels.name,
            "--train-shards", "3", "--val-shards", "2", "--runs-dir", "runs"]
    direct, dask = direct_and_dask(argv, address, Path("outputs"))
    counts = assert_same_output(direct, dask)
    assert counts["train"] | {"bytes": 0} == {
        "seen": 8, "written": 5, "fixed": 3, "rejected": 3, "shards": 3, "bytes": 0}
    assert counts["validation"] | {"bytes": 0} == {
        "seen": 4, "written": 3, "fixed": 0, "rejected": 1, "shards": 2, "bytes": 0}
    assert len((dask / "rejected.jsonl").read_text().splitlines()) == 4


def test_imagenet_tars_on_dask_match_the_direct_runner(cluster, tmp_path, shared_data,
                                                        ingest_helpers):
    """Acceptance 1, the official ILSVRC-2012 tars (read in place by byte range)."""
    address, _, _ = cluster
    folder, tars, labels = imagenet_sets(tmp_path, shared_data, ingest_helpers)
    argv = ["ingest", "imagenet", str(tars), "--val-labels", str(labels),
            "--train-shards", "3", "--val-shards", "2"]
    direct, dask = direct_and_dask(argv, address, tmp_path / "outputs")
    counts = assert_same_output(direct, dask)
    assert (counts["train"]["written"], counts["validation"]["written"]) == (5, 3)


def test_coco_on_dask_matches_the_direct_runner(cluster, tmp_path, shared_data):
    """Acceptance 1, COCO: VOC's 100 images as train; a validation split with a missing
    file and a grayscale image that is re-encoded."""
    from PIL import Image

    address, _, _ = cluster
    voc = shared_data / "voc100"
    images = tmp_path / "val_images"
    images.mkdir()
    first = sorted((voc / "images").iterdir())[0]
    shutil.copy(first, images / "good.jpg")
    Image.open(first).convert("L").save(images / "gray.jpg")
    width, height = Image.open(first).size
    voc_truth = json.loads((voc / "instances.json").read_text())
    truth = {
        "images": [{"id": i, "file_name": name, "width": width, "height": height}
                   for i, name in ((1, "good.jpg"), (2, "gray.jpg"), (3, "missing.jpg"))],
        "annotations": [{"id": 10 + i, "image_id": i, "category_id": 7, "bbox": [1, 2, 30, 40],
                         "area": 1200, "iscrowd": 0} for i in (1, 2, 3)],
        "categories": voc_truth["categories"],  # a split's category names must agree
    }
    (tmp_path / "val.json").write_text(json.dumps(truth))
    argv = ["ingest", "coco", "--images", str(voc / "images"), "--annotations",
            str(voc / "instances.json"), "--val-images", str(images), "--val-annotations",
            str(tmp_path / "val.json"), "--train-shards", "3", "--val-shards", "2"]
    direct, dask = direct_and_dask(argv, address, tmp_path / "outputs")
    counts = assert_same_output(direct, dask)
    assert counts["train"]["written"] == 100
    assert counts["validation"] | {"bytes": 0} == {
        "seen": 3, "written": 2, "fixed": 1, "rejected": 1, "shards": 2, "bytes": 0,
        "boxes_dropped": 0, "boxes_fixed": 0}
