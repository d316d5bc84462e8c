"""Acceptance 7: the same model and global batch trained on one device, mirrored over two
logical CPU devices, and by two worker processes on 127.0.0.1 end with the same weights.

The tiny model has no batch norm, whose per-replica statistics would legitimately differ.
Tolerance: 1e-5 absolute on weights of magnitude ~1 (float32 sums in another order).
"""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import train_helpers

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def mirrored(classification_examples, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("mirrored")
    code = ("import sys, train_helpers; "
            "train_helpers.compare_mirrored_with_one_device(sys.argv[1], sys.argv[2])")
    result = subprocess.run(
        [train_helpers.PYTHON, "-c", code, str(classification_examples), str(workdir)],
        env=train_helpers.subprocess_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir, json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_mirrored_over_two_logical_cpus_matches_one_device(mirrored):
    _, report = mirrored
    assert report["replicas"] == 2
    assert report["max_abs_change"] > 0.1  # the weights did move
    assert report["max_abs_diff"] < TOLERANCE


@pytest.mark.slow
def test_two_workers_on_localhost_match_one_device(mirrored, classification_examples,
                                                   tmp_path):
    workdir, _ = mirrored
    ports = train_helpers.free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    code = ("import sys, train_helpers; "
            "train_helpers.train_worker(sys.argv[1], sys.argv[2], sys.argv[3])")
    workers = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        workers.append(subprocess.Popen(
            [train_helpers.PYTHON, "-c", code, str(classification_examples),
             str(tmp_path / f"model{index}"), str(tmp_path / f"work{index}")],
            env=train_helpers.subprocess_env(TF_CONFIG=tf_config), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True))
    outputs = []
    for worker in workers:
        try:
            stdout, stderr = worker.communicate(timeout=600)
        finally:
            worker.kill()
        assert worker.returncode == 0, stderr[-3000:]
        outputs.append(json.loads(stdout.strip().splitlines()[-1]))
    assert [o["replicas"] for o in outputs] == [2, 2]
    assert outputs[0]["strategy"] == "CollectiveAllReduceStrategy"
    one_device = train_helpers.weights_of(workdir / "one_device")
    for index in range(2):
        worker_weights = train_helpers.weights_of(tmp_path / f"model{index}")
        difference = max(float(np.abs(a - b).max()) for a, b in zip(one_device, worker_weights))
        assert difference < TOLERANCE, (index, difference)
