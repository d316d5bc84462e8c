"""Ingest throughput, side by side with the classic re-encoding loop and the tfds builder.

All three read the same images: real ImageNet JPEGs from ../shared/data/imagenet_sample,
repeated under new names to N and 2N images per run, with grayscale images at ImageNet's
rate (~2%, 22k of 1.28M) rather than the sample's 19%, so the mix is ImageNet's.

* edgeline ingest (this stage), on the images packed as ILSVRC-2012 tars, with 1 worker and
  with 2 workers (the multi-processing DirectRunner);
* (a) the classic converter loop: decode and re-encode every JPEG (tf.io.decode_jpeg,
  tf.io.encode_jpeg at quality 95), tf.train.Example, tf.io.TFRecordWriter, one process;
* (b) the tensorflow-datasets ``imagenet2012`` builder: ``download_and_prepare`` with the
  same tars as ``manual_dir`` (passes bytes through, checks nothing by content);
* (c) the bracket loop: only the work no ingest of these bytes can skip, in one plain loop
  over the same JPEGs (one file each): read, parse the JPEG frame header, SHA-256, frame as a
  TFRecord (length and data CRC32C), write. Ingest's CPU time per image is compared with it;
* edgeline ingest on Beam's DaskRunner against a dask.distributed LocalCluster of 1 and of 2
  single-threaded worker processes on 127.0.0.1 (wall time; CPU time summed over the
  cluster's processes with psutil, as they are not this process's finished children). Each
  cluster exists only while its own runs go: idle, one uses about a sixth of a core, which
  the other runs' CPU figures would otherwise include.

Where the time goes (profiled before the per-image work was cut, 3000 images, CPU ms per
image, on a CPU with SHA extensions): listing the tar members 0.037 (tarfile reading 64 KiB
a member), reading 0.040, the JPEG walk 0.062, SHA-256 0.065, Example encoding 0.030,
TFRecord framing and write 0.078; Beam's per-element cost was too small to see (only refs
cross it, a few hundred bytes each). After: listing 0.028, reading 0.021, encoding 0.012.
Timed alone on 6,000 images (2026-12-03): reading 0.015, the walk 0.055 (the header 0.009),
SHA-256 0.063, the Example 0.026, framing and write 0.048 through a 1 MiB buffer (0.058
through the default 8 KiB), listing 0.026, the grayscale re-encodes about 0.03 spread over all.

The decode guarantee (every image written decodes in TensorFlow: each passed-through JPEG is
walked to its end-of-image marker, components/ingest/jpeg.py) is measured two ways: in the
pipeline, as the 1-worker slope minus the slope of the same run with the walk stopped at the
first scan (the bytes-only work the pipeline did before: read, frame header, SHA-256, encode,
write); and alone, as the walk's time per image over the same files minus the header's.

Per-image cost is the slope between the runs of N and 2N images, (t(2N) - t(N)) / N, so
start-up (imports, worker processes, tfds metadata) does not count. Every run but the
DaskRunner's is a fresh Python process, as when a user runs it, so no method inherits
another's state (TensorFlow's thread pools and allocator, left behind by the re-encoding
loop and the tfds builder, had slowed ingest's main thread by up to half). Each repeat runs
every method on N then 2N images back to back and gives one slope per method; the figure is
the median slope over the repeats. (The minimum time of each size taken separately, used at
first, mixed runs from different moments: at N = 1200 the same code measured 814 and 1524
images/s on a quiet machine, because the page-cache writeback of the TFRecords lands on
whichever run is writing, and a 2-second run has no room to average it out.)
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import edgeline  # noqa: F401

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
SAMPLE = (SHARED / "imagenet_sample" / "train").resolve()
N_IMAGES = 3000
GRAY_EVERY = 50  # one grayscale image in 50 (~2%, ImageNet's rate)
SHARDS = 16
VAL_IMAGES = 20
REPEATS = 5
WARM_UP_IMAGES = 100
# The 1 -> 2 workers figure on bigger runs: two workers' processes take about 2 s to start,
# give or take half a second, and at N = 3000 their slope was 0.4-0.5 s, so that start-up's
# jitter decided the ratio (1.65x to 2.01x over three runs, single slopes from -0.1 to 0.8 s).
SCALING_IMAGES = 12000
SCALING_METHODS = ("edgeline_1_worker", "edgeline_2_workers")
DASK_WORKERS = (1, 2)


def _sample_images() -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes]]]:
    from PIL import Image

    rgb, gray = [], []
    for path in sorted(SAMPLE.glob("*/*.JPEG")):
        data = path.read_bytes()
        (gray if Image.open(io.BytesIO(data)).mode == "L" else rgb).append(
            (path.parent.name, data))
    return rgb, gray


def make_dataset(root: Path, count: int) -> Path:
    """``count`` images as ``train/<wnid>/<wnid>_<i>.JPEG`` and as ILSVRC tars."""
    rgb, gray = _sample_images()
    folder = root / "folder" / "train"
    by_class: dict[str, dict[str, bytes]] = {}
    for i in range(count):
        wnid, data = gray[i % len(gray)] if i % GRAY_EVERY == 0 else rgb[i % len(rgb)]
        name = f"{wnid}_{i:06d}.JPEG"
        by_class.setdefault(wnid, {})[name] = data
        (folder / wnid).mkdir(parents=True, exist_ok=True)
        (folder / wnid / name).write_bytes(data)
    tars = root / "tars"
    tars.mkdir(parents=True)
    with tarfile.open(tars / "ILSVRC2012_img_train.tar", "w") as outer:
        for wnid, files in sorted(by_class.items()):
            buffer = io.BytesIO()
            with tarfile.open(fileobj=buffer, mode="w") as inner:
                for name, data in sorted(files.items()):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    inner.addfile(info, io.BytesIO(data))
            info = tarfile.TarInfo(f"{wnid}.tar")
            info.size = buffer.tell()
            buffer.seek(0)
            outer.addfile(info, buffer)
    # tfds' builder reads the validation tar's names even to build the train split; the same
    # small one in every run is a fixed cost, which the slope cancels.
    with tarfile.open(tars / "ILSVRC2012_img_val.tar", "w") as val:
        for number in range(1, VAL_IMAGES + 1):
            data = rgb[number % len(rgb)][1]
            info = tarfile.TarInfo(f"ILSVRC2012_val_{number:08d}.JPEG")
            info.size = len(data)
            val.addfile(info, io.BytesIO(data))
    return root


def time_edgeline(dataset: Path, output: Path, workers: int) -> float:
    from edgeline.components.ingest import core
    from edgeline.components.ingest.options import IngestOptions

    options = IngestOptions(source=str(dataset / "tars"), train_shards=SHARDS, val_shards=1,
                            workers=workers)
    started = time.perf_counter()
    result = core.run(options, output)
    seconds = time.perf_counter() - started
    assert result.properties["splits"]["train"]["written"] > 0
    return seconds


@contextlib.contextmanager
def bytes_only_walk():
    """The pipeline without the decode guarantee: each JPEG walked to its first scan only, as
    before it. Only for the 1-worker run, whose DirectRunner runs in this process."""
    from edgeline.components.ingest import images, jpeg

    guaranteed = images.inspect_jpeg
    images.inspect_jpeg = lambda data: jpeg.JpegLayout(jpeg.read_frame(data), 0, False)
    try:
        yield
    finally:
        images.inspect_jpeg = guaranteed


def time_edgeline_bytes_only(dataset: Path, output: Path) -> float:
    with bytes_only_walk():
        return time_edgeline(dataset, output, workers=1)


def time_walks(dataset: Path) -> tuple[float, float]:
    """Milliseconds per image of the whole-file walk and of the header-only walk, alone, over
    the same JPEGs (median of REPEATS, the two taking turns)."""
    from edgeline.components.ingest import jpeg

    blobs = [path.read_bytes() for path in sorted((dataset / "folder" / "train").glob("*/*"))]
    times: dict = {jpeg.inspect: [], jpeg.read_frame: []}
    for _ in range(REPEATS):
        for walk, measured in times.items():
            started = time.perf_counter()
            for blob in blobs:
                walk(blob)
            measured.append(1000 * (time.perf_counter() - started) / len(blobs))
    return statistics.median(times[jpeg.inspect]), statistics.median(times[jpeg.read_frame])


def time_reencoding_loop(dataset: Path, output: Path) -> float:
    """The classic converter: every JPEG decoded and re-encoded (build_imagenet_data.py)."""
    import tensorflow as tf

    from edgeline.pipeline import records

    files = sorted((dataset / "folder" / "train").glob("*/*.JPEG"))
    classes = sorted({f.parent.name for f in files})
    output.mkdir(parents=True)
    started = time.perf_counter()
    writers = [tf.io.TFRecordWriter(str(output / records.shard_name("train", i, SHARDS)))
               for i in range(SHARDS)]
    for index, path in enumerate(files):
        image = tf.io.decode_jpeg(tf.io.read_file(str(path)), channels=3)  # (H, W, 3)
        encoded = tf.io.encode_jpeg(image, quality=95).numpy()
        example = records.classification_example(
            encoded=encoded, height=int(image.shape[0]), width=int(image.shape[1]),
            filename=path.name, source_id=path.name,
            sha256=hashlib.sha256(encoded).hexdigest(),
            label=classes.index(path.parent.name), synset=path.parent.name,
            text=path.parent.name)
        writers[index % SHARDS].write(example.SerializeToString())
    for writer in writers:
        writer.close()
    return time.perf_counter() - started


def time_tfds_builder(dataset: Path, output: Path) -> float:
    import tensorflow_datasets as tfds

    started = time.perf_counter()
    builder = tfds.builder("imagenet2012", data_dir=str(output))
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(dataset / "tars")))
    seconds = time.perf_counter() - started
    assert builder.info.splits["train"].num_examples > 0
    return seconds


def time_bracket_loop(dataset: Path, output: Path) -> float:
    """The physical bracket: read, frame header, SHA-256, TFRecord framing (CRC32C), write;
    the image bytes as the record, in the same number of shards as ingest."""
    from edgeline.components.ingest import jpeg, tfrecord

    files = sorted((dataset / "folder" / "train").glob("*/*.JPEG"))
    output.mkdir(parents=True)
    started = time.perf_counter()
    shards = [open(output / f"{i:05d}.tfrecord", "wb") for i in range(SHARDS)]
    for index, path in enumerate(files):
        with open(path, "rb") as f:
            data = f.read()
        jpeg.read_frame(data)
        hashlib.sha256(data).digest()
        shards[index % SHARDS].writelines(tfrecord.frame_record(data))
    for shard in shards:
        shard.close()
    return time.perf_counter() - started


@contextlib.contextmanager
def dask_cluster(workers: int):
    """A LocalCluster of ``workers`` single-threaded worker processes on 127.0.0.1."""
    from dask.distributed import LocalCluster

    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                           host="127.0.0.1", dashboard_address=None)
    try:
        yield cluster
    finally:
        cluster.close()


def time_edgeline_dask(dataset: Path, output: Path, address: str) -> float:
    from edgeline.components.ingest import core
    from edgeline.components.ingest.options import IngestOptions

    options = IngestOptions(source=str(dataset / "tars"), train_shards=SHARDS, val_shards=1,
                            runner="DaskRunner",
                            beam_options=("--dask_client_address", address))
    started = time.perf_counter()
    core.run(options, output)
    return time.perf_counter() - started


def sha_extensions() -> bool:
    """Whether the CPU has the SHA extensions (x86 ``sha_ni``) that OpenSSL's SHA-256 uses."""
    try:
        return " sha_ni" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def _row(figure, value, baseline, baseline_value, target, note):
    ratio = value / baseline_value if baseline_value else None
    goal = float(target.split("x")[0].lstrip(">= "))
    return {"figure": figure, "value": round(value, 1), "baseline": baseline,
            "baseline_value": round(baseline_value, 1) if baseline_value else None,
            "ratio": round(ratio, 2) if ratio else None, "target": target,
            "met": bool(ratio and ratio >= goal), "note": note}


# The methods timed each in a process of its own, as a user runs them: in the bench process,
# after the re-encoding loop and the tfds builder had run TensorFlow there, ingest's main
# thread spent 0.37-0.57 ms per image instead of 0.25-0.34 alone (TensorFlow's thread pools
# and allocator stay behind), and which method ran after which decided its figure.
ISOLATED_METHODS = {
    "edgeline_1_worker": functools.partial(time_edgeline, workers=1),
    "edgeline_2_workers": functools.partial(time_edgeline, workers=2),
    "edgeline_1_worker_bytes_only": time_edgeline_bytes_only,
    "bracket_loop": time_bracket_loop,
    "reencoding_loop": time_reencoding_loop,
    "tfds_imagenet2012": time_tfds_builder,
}


def run(workdir: Path) -> list[dict]:
    workdir = Path(workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    sizes = (N_IMAGES, 2 * N_IMAGES)
    datasets = {n: make_dataset(workdir / f"data_{n}", n) for n in sizes}
    timed = functools.partial(_time_isolated, warm_up=make_dataset(workdir / "data_warm_up",
                                                                   WARM_UP_IMAGES))
    wall_slopes, cpu_slopes = _measure(
        [name for name in ISOLATED_METHODS if name != "edgeline_2_workers"], timed, datasets,
        sizes, workdir)
    wall_slopes.update(_scaling_slopes(timed, workdir))
    # Each dask cluster only for its own runs: idle, a cluster's scheduler, nanny and workers
    # use about a sixth of a core (heartbeats, system monitors), which the CPU figures would
    # otherwise charge to every other method (and, with both clusters up, 1 worker's runs to
    # 2 workers' and back) in proportion to wall time.
    dask_wall, dask_cpu = {}, {}
    for workers in DASK_WORKERS:
        with dask_cluster(workers) as cluster:
            address = cluster.scheduler_address
            time_edgeline_dask(datasets[sizes[0]], workdir / f"warm_up_dask_{workers}",
                               address)  # the workers' imports
            wall, cpu = _measure([f"dask_{workers}"],
                                 functools.partial(_time_dask, address=address), datasets,
                                 sizes, workdir)
        dask_wall.update(wall)
        dask_cpu.update(cpu)
    return _rows({**wall_slopes, **dask_wall}, {**cpu_slopes, **dask_cpu}, datasets, sizes,
                 workdir)


def _scaling_slopes(timed, workdir: Path) -> dict[str, list[float]]:
    """Wall slopes of 1 and of 2 workers between SCALING_IMAGES and twice that, as
    ``scaling_<method>``, rescaled to N_IMAGES so that every rate comes from one formula."""
    sizes = (SCALING_IMAGES, 2 * SCALING_IMAGES)
    datasets = {n: make_dataset(workdir / f"scaling_data_{n}", n) for n in sizes}
    wall_slopes, _ = _measure(list(SCALING_METHODS), timed, datasets, sizes, workdir)
    for dataset in datasets.values():
        shutil.rmtree(dataset)  # 5 GB
    return {f"scaling_{name}": [slope * N_IMAGES / SCALING_IMAGES for slope in slopes]
            for name, slopes in wall_slopes.items()}


def _time_isolated(name: str, dataset: Path, output: Path,
                   warm_up: Path) -> tuple[float, float]:
    """Wall and CPU seconds of one run of ``ISOLATED_METHODS[name]`` in a fresh Python process,
    after a run on the small ``warm_up`` dataset there: first-call costs (imports, Beam's
    first pipeline, 4 s for ingest, its tfds metadata importing TensorFlow) stay outside the
    timing rather than cancel in the slope with their own noise."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_ingest", name, str(warm_up), str(dataset),
         str(output)],
        cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{name} on {dataset} failed:\n{done.stderr[-4000:]}")
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    return measured["wall"], measured["cpu"]


def _time_dask(name: str, dataset: Path, output: Path, address: str) -> tuple[float, float]:
    """Wall and CPU seconds of one DaskRunner run: this process (the scheduler, the nannies,
    Beam's client) and the cluster's worker processes."""
    cpu_before = _cpu_seconds()
    wall = time_edgeline_dask(dataset, output, address)
    return wall, _cpu_seconds() - cpu_before


def _measure(names: list[str], timed, datasets: dict, sizes: tuple, workdir: Path):
    """Slopes of wall and CPU seconds between N and 2N images, REPEATS per method; ``timed``
    runs one method on one dataset and returns (wall, CPU) seconds."""
    wall_slopes = {name: [] for name in names}
    cpu_slopes = {name: [] for name in names}
    # Interleaved repeats: each method's N and 2N runs back to back give one slope; the
    # methods take turns, so drift in the machine's state reaches them all alike.
    for repeat in range(REPEATS):
        for name in names:
            wall, cpu = {}, {}
            for n in sizes:
                output = workdir / f"out_{name}_{n}_{repeat}"
                # The writeback of what the previous run wrote (and of the removal of it),
                # done now, outside the timing, not during this run: without it one run's
                # system time varied threefold with what ran before it.
                os.sync()
                wall[n], cpu[n] = timed(name, datasets[n], output)
                print(f"[bench ingest] {name} {n} images: {wall[n]:.1f}s wall, {cpu[n]:.1f}s "
                      f"CPU, load {os.getloadavg()[0]:.1f}", flush=True)
                shutil.rmtree(output, ignore_errors=True)
            wall_slopes[name].append(wall[sizes[1]] - wall[sizes[0]])
            cpu_slopes[name].append(cpu[sizes[1]] - cpu[sizes[0]])
    return wall_slopes, cpu_slopes


def _rows(wall_slopes: dict, cpu_slopes: dict, datasets: dict, sizes: tuple,
          workdir: Path) -> list[dict]:
    sha256_ms = time_sha256(datasets[sizes[0]])
    walk_ms, header_ms = time_walks(datasets[sizes[0]])
    shutil.rmtree(workdir, ignore_errors=True)
    # Images per second from the slope: N more images took t(2N) - t(N) more seconds.
    rate = {name: N_IMAGES / max(1e-9, statistics.median(t)) for name, t in wall_slopes.items()}
    # The same slope in CPU seconds (this process and its worker processes).
    cpu_rate = {name: N_IMAGES / max(1e-9, statistics.median(t))
                for name, t in cpu_slopes.items()}
    how = (f"wall-clock images/s, slope between {sizes[0]} and {sizes[1]} real ImageNet JPEGs "
           f"({100 // GRAY_EVERY}% grayscale), {SHARDS} shards, median of {REPEATS}; load average "
           f"{os.getloadavg()[1]:.1f} on {os.cpu_count()} cores; CPU SHA extensions: "
           f"{'yes' if sha_extensions() else 'no'}")
    one, two = rate["edgeline_1_worker"], rate["scaling_edgeline_2_workers"]
    scaling_one = rate["scaling_edgeline_1_worker"]
    scaling_how = how.replace(f"between {sizes[0]} and {sizes[1]}",
                              f"between {SCALING_IMAGES} and {2 * SCALING_IMAGES}")

    def per_cpu(name: str, baseline: str) -> str:
        return (f"; per CPU-second {cpu_rate[name]:.0f} vs {cpu_rate[baseline]:.0f} images "
                f"({cpu_rate[name] / cpu_rate[baseline]:.2f}x)")

    # The guarantee per image: what the 1-worker run spends per image beyond the same run
    # without it (slopes, so start-up cancels). CPU time is the steadier figure on a shared
    # machine; wall time is in the note.
    wall_per_image = {name: 1000 * statistics.median(t) / N_IMAGES
                      for name, t in wall_slopes.items()}
    cpu_per_image = {name: 1000 * statistics.median(t) / N_IMAGES
                     for name, t in cpu_slopes.items()}
    bytes_only = cpu_per_image["edgeline_1_worker_bytes_only"]
    guarantee = cpu_per_image["edgeline_1_worker"] - bytes_only
    wall_bytes_only = wall_per_image["edgeline_1_worker_bytes_only"]
    wall_guarantee = wall_per_image["edgeline_1_worker"] - wall_bytes_only
    guarantee_note = (
        f"{how}; CPU ms per image (this process and its workers), 1 worker: the pipeline with "
        "the whole-file JPEG walk minus the same pipeline walking to the first scan only (the "
        "bytes-only work: read, frame header, SHA-256, encode, write); in wall time "
        f"{wall_guarantee:.3f} of {wall_bytes_only:.3f} ms ({wall_guarantee / wall_bytes_only:.2f}x)")
    bytes_only_name = "bytes-only work per image, 1 worker, CPU ms"
    return [
        {"figure": "decode guarantee, CPU ms per image (every JPEG written decodes in TensorFlow)",
         "value": round(guarantee, 3), "baseline": bytes_only_name,
         "baseline_value": round(bytes_only, 3), "ratio": round(guarantee / bytes_only, 3),
         "target": "informative (its cost)", "met": None, "note": guarantee_note},
        {"figure": "decode guarantee alone, ms per image (the walk, outside the pipeline)",
         "value": round(walk_ms - header_ms, 3), "baseline": bytes_only_name,
         "baseline_value": round(bytes_only, 3),
         "ratio": round((walk_ms - header_ms) / bytes_only, 3),
         "target": "informative (its cost)", "met": None,
         "note": f"whole-file walk {walk_ms:.3f} ms minus header walk {header_ms:.3f} ms per "
                 f"image, median of {REPEATS} passes over the {N_IMAGES} JPEGs, one core"},
        _row("ingest images/s, 1 worker", one, "decode+re-encode loop",
             rate["reencoding_loop"], ">= 5x",
             how + per_cpu("edgeline_1_worker", "reencoding_loop")),
        _row("ingest images/s, 1 worker", one, "tfds imagenet2012 builder",
             rate["tfds_imagenet2012"], ">= 0.8x",
             how + per_cpu("edgeline_1_worker", "tfds_imagenet2012")
             + "; tfds checks nothing by content" + sha256_note(one, rate["tfds_imagenet2012"],
                                                                sha256_ms)),
        _row("ingest images/s, 2 workers", two, "ingest, 1 worker", scaling_one, ">= 1.8x",
             scaling_how + "; multi-processing DirectRunner"),
        _row("ingest images/s, 2 workers", two, "decode+re-encode loop",
             rate["reencoding_loop"], ">= 5x", scaling_how + f"; the loop's {how}"),
        *_cost_rows(cpu_per_image, cpu_rate, how),
        *_dask_rows(rate, cpu_per_image, how),
    ]


def _cost_rows(cpu_per_image: dict, cpu_rate: dict, how: str) -> list[dict]:
    """Ingest's CPU time per image against the bracket loop's (<= 2x) and the tfds builder's
    (>= 1.0x per CPU-second)."""
    ingest, bracket = cpu_per_image["edgeline_1_worker"], cpu_per_image["bracket_loop"]
    tfds_ratio = cpu_rate["edgeline_1_worker"] / cpu_rate["tfds_imagenet2012"]
    return [
        {"figure": "ingest CPU ms per image, 1 worker", "value": round(ingest, 3),
         "baseline": "bracket loop: read, JPEG header, SHA-256, CRC32C framing, write",
         "baseline_value": round(bracket, 3), "ratio": round(ingest / bracket, 2),
         "target": "<= 2x", "met": ingest / bracket <= 2.0,
         "note": how + "; CPU ms per image (slope) of this process and its workers; the "
                 "bracket loop in one process over the same JPEGs as files"},
        {"figure": "ingest images per CPU-second, 1 worker",
         "value": round(cpu_rate["edgeline_1_worker"], 1),
         "baseline": "tfds imagenet2012 builder",
         "baseline_value": round(cpu_rate["tfds_imagenet2012"], 1),
         "ratio": round(tfds_ratio, 2), "target": ">= 1.0x", "met": tfds_ratio >= 1.0,
         "note": how + "; tfds checks nothing by content and stores no SHA-256"},
    ]


def _dask_rows(rate: dict, cpu_per_image: dict, how: str) -> list[dict]:
    one, two = rate["dask_1"], rate["dask_2"]
    note = (f"{how}; Beam's DaskRunner on a dask.distributed LocalCluster of single-threaded "
            f"worker processes on 127.0.0.1; CPU ms per image (cluster processes included) "
            f"{cpu_per_image['dask_1']:.3f} on 1 worker, {cpu_per_image['dask_2']:.3f} on 2; "
            f"DirectRunner 1 worker {rate['edgeline_1_worker']:.0f} images/s")
    return [
        {"figure": "ingest images/s, DaskRunner, 1 worker", "value": round(one, 1),
         "baseline": "ingest, DirectRunner, 1 worker",
         "baseline_value": round(rate["edgeline_1_worker"], 1),
         "ratio": round(one / rate["edgeline_1_worker"], 2), "target": "reported",
         "met": None, "note": note},
        {"figure": "ingest images/s, DaskRunner, 2 workers", "value": round(two, 1),
         "baseline": "ingest, DaskRunner, 1 worker", "baseline_value": round(one, 1),
         "ratio": round(two / one, 2), "target": "reported", "met": None, "note": note},
    ]


def time_sha256(dataset: Path) -> float:
    """Milliseconds per image for SHA-256 of the image bytes alone (best of REPEATS): the
    ``image/key/sha256`` feature of the TFRecord contract, which edgeline computes for every
    image and tfds' builder does not."""
    blobs = [path.read_bytes() for path in sorted((dataset / "folder" / "train").glob("*/*"))]
    best = float("inf")
    for _ in range(REPEATS):
        started = time.perf_counter()
        for blob in blobs:
            hashlib.sha256(blob).digest()
        best = min(best, time.perf_counter() - started)
    return 1000 * best / len(blobs)


def sha256_note(rate: float, tfds_rate: float, sha256_ms: float) -> str:
    """How much of edgeline's per-image cost is the contract's SHA-256 (tfds stores none)."""
    per_image_ms = 1000 / rate
    without = 1000 / max(1e-9, per_image_ms - sha256_ms)
    return (f"; of edgeline's {per_image_ms:.2f} ms per image, {sha256_ms:.2f} ms is the SHA-256 "
            f"of the image bytes for the contract's image/key/sha256 (tfds stores none; "
            f"measured alone on the same files), without it {without:.0f} images/s = "
            f"{without / tfds_rate:.2f}x tfds")


def _cpu_seconds() -> float:
    """User + system CPU of this process (all threads), of its finished children (the
    DirectRunner's workers) and of its live ones (the dask clusters' processes)."""
    import psutil

    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    live = 0.0
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            times = child.cpu_times()
            live += times.user + times.system
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime + live


def _run_one(argv: list[str]) -> None:
    """``python -m benchmarks.bench_ingest METHOD WARM_UP DATASET OUTPUT``: a run on WARM_UP,
    then one timed run on DATASET, printed as JSON on the last line (what ``_time_isolated``
    reads)."""
    name, warm_up, dataset, output = argv
    method = ISOLATED_METHODS[name]
    method(Path(warm_up), Path(output + "_warm_up"))
    shutil.rmtree(output + "_warm_up")
    os.sync()
    cpu_before = _cpu_seconds()
    wall = method(Path(dataset), Path(output))
    print(json.dumps({"wall": wall, "cpu": _cpu_seconds() - cpu_before}))


if __name__ == "__main__":
    _run_one(sys.argv[1:])
