"""Real faults during `prepare_data.py frames` and `flow`: SIGKILL at several moments, Ctrl-C,
SIGTERM and two processes on one --out. After each, every published folder is whole, and the same
command finishes the job with nothing left behind; `check` then says complete.

Tiny generated XviD videos; DIS flow at 64x48 for speed.
"""
import os
import re
import signal
import subprocess
import sys
import time

import pytest

import fakedata
import faults
from twostream.datasets import records, ucf101
from twostream.storage import atomic, locks

pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRAMES = 40
NAMES = [f"v_{cls}_g{group:02d}_c01" for cls in ("Alpha", "Beta") for group in (1, 2, 8, 9)]
# Where SIGKILL strikes, one run after the other (faults.py), in the first video that the runs before
# left undone (the videos are done in name order, so each run reaches it): the whole job, as a
# scheduler's kill does, or the main process alone, as the out-of-memory killer may.
KILLS = ["KILLJOB 1 image",  # its first image
         "KILLJOB 1 after-rename",  # published (flow: u, not yet v), not yet reported
         "KILLJOB 1 before-rename",  # a whole temporary folder, about to be published
         "KILLMAIN 20 image"]  # half-way; its workers finish their videos as the same command starts again


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos") / "UCF-101"
    for seed, name in enumerate(NAMES):
        fakedata.write_video(root / ucf101.parse_name(name)[0] / f"{name}.avi", frames=FRAMES, seed=seed)
    return root


def command(task, videos, data):
    if task == "frames":  # full size: slow enough to be killed in the middle of a video
        return ["frames", "--videos", videos, "--out", data / ucf101.RGB_DIR, "--workers", 2]
    return ["flow", "--videos", videos, "--out", data / ucf101.FLOW_DIR, "--flow-method", "dis", "--size", "64x48",
            "--workers", 2]


def start(argv, fault="", trace=""):
    """prepare_data.py in its own process group, as a shell job is, with a FAULT (faults.py) in all its processes."""
    env = faults.fault_environment(fault, trace)
    return subprocess.Popen([sys.executable, os.path.join(REPO, "prepare_data.py"), *map(str, argv)], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def finish(argv, timeout=120):
    process = start(argv)
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out + err


def wait_for_exit(groups, timeout=60):
    """Until no process of these process groups runs (orphaned workers end after their video)."""
    deadline = time.monotonic() + timeout
    for group in groups:
        while time.monotonic() < deadline:
            try:
                os.killpg(group, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)


def parents(task, data):
    if task == "frames":
        return [data / ucf101.RGB_DIR]
    return [data / ucf101.FLOW_DIR / component for component in "uv"]


def work_in_progress(folders):
    return [entry for folder in folders if os.path.isdir(folder) for entry in os.listdir(folder)
            if entry.endswith((atomic.TEMP_SUFFIX, locks.LOCK_SUFFIX))]


def wait_until_working(process, folders, timeout=60):
    """Until a temporary folder exists (a video is being written) or the process has ended."""
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        if any(name.endswith(atomic.TEMP_SUFFIX) for name in work_in_progress(folders)):
            return
        time.sleep(0.005)


def assert_published_folders_whole(task, data):
    """Every folder under a final name holds all its images, numbered from 1, and its record."""
    images = FRAMES - (task == "flow")
    for parent in parents(task, data):
        if not os.path.isdir(parent):
            continue
        for name in os.listdir(parent):
            if name.startswith("."):
                continue
            folder = parent / name
            assert sorted(os.listdir(folder)) == sorted(
                [ucf101.FRAME_NAME.format(i) for i in range(1, images + 1)] + [records.RECORD_FILE]), folder
            assert records.read_record(folder)["images"] == images


def first_undone(task, data):
    """The first video (in name order) that lacks a published folder (flow: its v folder, published last)."""
    done = set(os.listdir(parents(task, data)[-1])) if os.path.isdir(parents(task, data)[-1]) else set()
    return min(set(NAMES) - done)


def assert_complete(videos, data, tmp_path):
    splits = tmp_path / "splits"
    if not splits.exists():
        assert finish(["splits", "--videos", videos, "--out", splits])[0] == 0
    code, output = finish(["check", "--data-dir", data, "--splits-dir", splits, "--workers", 1])
    assert code == 0, output
    assert f"{len(NAMES)} of {len(NAMES)} videos (train + test) complete, all frames and flow present" in output


@pytest.mark.parametrize("task", ["frames", "flow"])
def test_sigkill_at_several_moments_then_the_same_command_resumes(videos, tmp_path, task):
    data = tmp_path / "data"
    other = "flow" if task == "frames" else "frames"
    assert finish(command(other, videos, data))[0] == 0  # check needs both
    argv = command(task, videos, data)
    groups = []
    for kill in KILLS:
        fault = f"{kill} {first_undone(task, data)}"
        process = start(argv, fault)
        groups.append(process.pid)
        process.communicate(timeout=120)
        assert process.returncode == -signal.SIGKILL, fault  # the fault struck
        assert_published_folders_whole(task, data)
        if kill.startswith("KILLJOB") and kill.endswith("image"):  # killed inside a video: its part is left
            assert any(name.endswith(atomic.TEMP_SUFFIX) for name in work_in_progress(parents(task, data)))
    code, output = finish(argv)
    assert code == 0, output
    assert "0 failed, 0 damaged" in output
    wait_for_exit(groups)
    assert_published_folders_whole(task, data)
    assert sorted(os.listdir(parents(task, data)[-1])) == sorted(NAMES)
    assert work_in_progress(parents(task, data)) == []  # the killed processes' temporary folders are gone
    assert_complete(videos, data, tmp_path)


@pytest.mark.parametrize("task", ["frames", "flow"])
def test_two_processes_on_one_out_publish_only_whole_folders(videos, tmp_path, task):
    data = tmp_path / "data"
    other = "flow" if task == "frames" else "frames"
    assert finish(command(other, videos, data))[0] == 0
    argv = [*command(task, videos, data)[:-1], 1]  # one worker each
    first, second = start(argv), start(argv)
    results = [process.communicate(timeout=120) for process in (first, second)]
    assert (first.returncode, second.returncode) == (0, 0), results
    assert_published_folders_whole(task, data)
    assert sorted(os.listdir(parents(task, data)[-1])) == sorted(NAMES)
    assert work_in_progress(parents(task, data)) == []
    assert_complete(videos, data, tmp_path)


@pytest.mark.parametrize("task", ["frames", "flow"])
def test_two_processes_racing_for_a_video_count_it_once(tmp_path, task):
    """The first process stops with a video's last folder computed, about to publish it; the second does every
    video; the first goes on and loses that rename. Between them they report each video written once."""
    names = NAMES[:3]
    for seed, name in enumerate(names):
        fakedata.write_video(tmp_path / "UCF-101" / ucf101.parse_name(name)[0] / f"{name}.avi", frames=6, seed=seed)
    data, trace = tmp_path / "data", tmp_path / "trace"
    argv = [*command(task, tmp_path / "UCF-101", data)[:-1], 1]
    if task == "frames":
        argv += ["--size", "32x24"]
    last = parents(task, data)[-1]  # flow: its u folder is published before it stops
    first = start(argv, f"STOP 1 before-rename {last / names[0]}", trace)
    try:
        deadline = time.monotonic() + 60
        while not (trace.exists() and trace.read_text().endswith("stopped\n")):
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.02)
        code, second = finish(argv)
        assert code == 0, second
        os.killpg(first.pid, signal.SIGCONT)
        out, err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    assert first.returncode == 0, out + err
    counts = [int(re.search(r"(\d+) videos written", output)[1]) for output in (out, second)]
    assert sum(counts) == len(names), (out, second)
    assert f"{len(names) - counts[0]} by another process" in out
    assert sorted(os.listdir(last)) == sorted(names)
    assert work_in_progress(parents(task, data)) == []


def test_ctrl_c_stops_says_so_and_the_same_command_resumes(videos, tmp_path):
    data = tmp_path / "data"
    assert finish(command("flow", videos, data))[0] == 0
    argv = command("frames", videos, data)
    process = start(argv)
    wait_until_working(process, parents("frames", data))
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends: to every process of the job
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, out + err
    assert "the same command started again resumes" in err
    assert "Traceback" not in err
    assert_published_folders_whole("frames", data)
    assert work_in_progress(parents("frames", data)) == []  # the workers' temporary folders are gone too
    code, output = finish(argv)
    assert code == 0, output
    assert_complete(videos, data, tmp_path)


def test_sigterm_leaves_only_whole_folders_and_the_same_command_resumes(videos, tmp_path):
    data = tmp_path / "data"
    assert finish(command("frames", videos, data))[0] == 0
    argv = command("flow", videos, data)
    process = start(argv)
    wait_until_working(process, parents("flow", data))
    process.terminate()  # `kill PID`: the main process only; its workers may finish their video
    process.communicate(timeout=60)
    assert process.returncode != 0
    assert_published_folders_whole("flow", data)
    code, output = finish(argv)  # while orphaned workers may still be publishing
    assert code == 0, output
    assert_published_folders_whole("flow", data)
    assert_complete(videos, data, tmp_path)


# A job whose worker process is killed (as the kernel's out-of-memory killer does), in a module of its
# own so that the forkserver's processes can import it.
KILLED_WORKER = """
import os, signal, sys
from twostream import errors
from twostream.storage import workers

def work(job):
    if job == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return job

def main(argv):
    print(sorted(workers.run_parallel(work, list(range(8)), 2)))

if __name__ == "__main__":
    import killed_worker
    sys.exit(errors.run(killed_worker.main))
"""


def test_a_killed_worker_process_stops_the_run_with_exit_1_instead_of_hanging(tmp_path):
    (tmp_path / "killed_worker.py").write_text(KILLED_WORKER)
    env = {**os.environ, "PYTHONPATH": REPO}
    try:
        result = subprocess.run([sys.executable, str(tmp_path / "killed_worker.py")], capture_output=True, text=True,
                                env=env, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("the run waited forever for the killed worker's job")
    assert result.returncode == 1, result.stderr
    assert "worker process of 2 ended abruptly" in result.stderr and "same command" in result.stderr


# ---------------------------------------------------------------------------- tvl1_keras batches across videos

@pytest.mark.slow
def test_sigkill_in_the_middle_of_batches_then_the_same_command_resumes(videos, tmp_path, monkeypatch):
    # JAX caches the compiled tvl1 on disk: only the first run compiles
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax_cache"))
    data = tmp_path / "data"
    assert finish(["frames", "--videos", videos, "--out", data / ucf101.RGB_DIR, "--size", "32x24"])[0] == 0
    argv = ["flow", "--videos", videos, "--out", data / ucf101.FLOW_DIR, "--flow-method", "tvl1_keras",
            "--size", "32x24", "--batch-size", 4, "--workers", 2]  # two pyramid levels: a quick compile
    # The JPEGs are written by the main process's threads while the next batch computes.
    for kill in ("KILLJOB 1 image", "KILLJOB 7 image", "KILLJOB 1 after-rename"):
        process = start(argv, f"{kill} {first_undone('flow', data)}")
        process.communicate(timeout=300)
        assert process.returncode == -signal.SIGKILL, kill
        assert_published_folders_whole("flow", data)
        if kill.endswith("image"):
            assert any(name.endswith(atomic.TEMP_SUFFIX) for name in work_in_progress(parents("flow", data)))
    code, output = finish(argv, timeout=600)
    assert code == 0, output
    assert "0 failed, 0 damaged" in output
    assert_published_folders_whole("flow", data)
    assert work_in_progress(parents("flow", data)) == []
    assert_complete(videos, data, tmp_path)
