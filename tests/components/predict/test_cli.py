"""``edgeline predict`` as a user runs it (a subprocess): unreadable files among good ones,
only unreadable files, a file that is not a model, and a Policy played into a GIF."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

from PIL import Image


def _edgeline(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "edgeline", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd)


def _broken_files(folder):
    """A truncated JPEG and a text file wearing a .jpg name."""
    folder.mkdir(parents=True, exist_ok=True)
    whole = next(p for p in sorted(folder.parent.rglob("*.jpg")) if p.parent != folder)
    data = whole.read_bytes()
    (folder / "truncated.jpg").write_bytes(data[:len(data) // 2])
    (folder / "notes.jpg").write_text("a shopping list, not a picture\n")
    return folder


def test_a_broken_file_among_good_ones_is_listed_and_the_rest_predicted(
        squares_detector, squares_images, tmp_path):
    pictures = tmp_path / "pictures"
    shutil.copytree(squares_images, pictures)
    _broken_files(pictures / "broken")
    output = tmp_path / "out"
    result = _edgeline("predict", squares_detector["int8"], pictures, tmp_path / "missing.png",
                       "--output", output, "--score-threshold", "0.05")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    skipped = sorted(line for line in result.stderr.splitlines() if line.startswith("skipped "))
    assert len(skipped) == 3
    assert "missing.png: no such file or directory" in skipped[0]
    assert "notes.jpg: not an image PIL recognizes" in skipped[1]
    assert "truncated.jpg: a damaged image (image file is truncated" in skipped[2]
    summary = result.stdout.strip().splitlines()[-1]
    assert summary == (f"predict: 8 predicted, 3 skipped of 11 given; predictions.json and 8 "
                       f"annotated image(s) in {output}")
    assert sum(line.endswith("detection(s)") or ": " in line
               for line in result.stdout.splitlines()[:-1]) == 8  # one line per picture
    rows = json.loads((output / "predictions.json").read_text())
    assert {row["file_name"] for row in rows} == {p.name for p in squares_images.iterdir()}
    assert sorted(p.name for p in output.iterdir() if p.suffix == ".jpg") == sorted(
        p.name for p in squares_images.iterdir())


def test_only_broken_files_is_exit_2_and_one_line(squares_detector, tmp_path, squares_images):
    broken = _broken_files(squares_images.parent / "only_broken")
    result = _edgeline("predict", squares_detector["int8"], broken, "--output", tmp_path / "o")
    assert result.returncode == 2
    assert result.stderr.startswith("edgeline: error: nothing could be predicted: 2 file(s) "
                                    "given, all skipped; ")
    assert result.stderr.strip().count("\n") == 0 and result.stdout == ""
    assert not (tmp_path / "o").exists()  # nothing is written


def test_a_file_that_is_not_a_model_is_exit_2_and_one_line(squares_images, tmp_path):
    picture = next(squares_images.iterdir())
    for model in (picture, tmp_path / "nothing_here"):
        result = _edgeline("predict", model, squares_images, "--output", tmp_path / "o")
        assert result.returncode == 2
        assert result.stderr.startswith("edgeline: error: Received: MODEL=")
        assert result.stderr.strip().count("\n") == 0
    fake = tmp_path / "model.tflite"
    fake.write_bytes(b"not a flatbuffer" * 8)
    result = _edgeline("predict", fake, squares_images, "--output", tmp_path / "o")
    assert result.returncode == 2 and "not a loadable .tflite model" in result.stderr
    assert result.stderr.strip().count("\n") == 0


def test_a_classifier_prints_its_top_k(colour_classifier, colour_images, tmp_path):
    picture = sorted(colour_images["folder"].iterdir())[1]
    result = _edgeline("predict", colour_classifier["int8"], picture, "--top-k", "3",
                       "--output", tmp_path / "o")
    assert result.returncode == 0, result.stderr
    line, summary = result.stdout.strip().splitlines()
    assert line.startswith(f"{picture}: {colour_images['truth'][picture.name]} 0.")
    assert line.count(", ") == 2  # three labels
    assert summary == f"predict: 1 predicted, 0 skipped of 1 given; predictions.json in {tmp_path / 'o'}"


def test_a_policy_plays_seeded_episodes_and_draws_the_first(tmp_path):
    """A CartPole DQN trained for a few hundred steps by the rl stage's core: its greedy
    returns for seeds 3 and 4, and the first episode as an animated GIF, one frame a step
    plus the first."""
    from edgeline.components.rl import core as rl_core
    from edgeline.components.rl.options import DqnOptions, RlOptions

    options = RlOptions(algorithm="dqn", dqn=DqnOptions(q_network="dqn_mlp_100_50",
                                                        initial_collect_steps=100,
                                                        epsilon_decay_steps=200),
                        max_env_steps=300, eval_interval=300, eval_episodes=1,
                        checkpoint_interval=300, log_interval=300, parity_observations=0)
    rl_core.run(options, output_dir=tmp_path / "policy", checkpoint_dir=tmp_path / "ckpt",
                seed=0, deterministic=True, log=lambda message: None)
    result = _edgeline("predict", tmp_path / "policy", "--episodes", "2", "--seed", "3",
                       "--output", tmp_path / "play")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert [line.split(":")[0] for line in lines[:2]] == ["episode seed 3", "episode seed 4"]
    episodes = json.loads((tmp_path / "play" / "episodes.json").read_text())
    assert episodes["seeds"] == [3, 4] and len(episodes["returns"]) == 2
    gif = Image.open(tmp_path / "play" / "episode_seed3.gif")
    # CartPole pays 1 a step, so the first return is its length; the replay drawn is that
    # very episode (same seed, deterministic physics).
    assert episodes["first_episode_steps"] == episodes["returns"][0]
    assert episodes["gif_frames"] == episodes["first_episode_steps"] + 1
    # PIL writes a frame that repeats the one before as a longer showing of that one, so the
    # frames are counted in time: 40 ms each.
    durations = []
    for index in range(gif.n_frames):
        gif.seek(index)
        durations.append(gif.info["duration"])
    assert gif.is_animated and sum(durations) == 40 * episodes["gif_frames"]
    assert gif.size == (300, 200)
    assert "drawn in" in lines[-1] and str(tmp_path / "play" / "episode_seed3.gif") in lines[-1]
