"""``fcn-deploy infer --ray``: the same outputs as plain infer, bad files, a killed worker, resume, two nodes."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from cluster_support import cli_command, cli_env, hooked_env, processes_with, write_images
from PIL import Image

from fcn_deploy.cli import run
from fcn_deploy.cluster import (
    MODEL_COPY_PREFIX,
    RayConfig,
    check_worker_fits,
    free_loopback_port,
    loopback_environment,
    model_files,
    remove_orphaned_model_copies,
    remove_partial_outputs,
)
from fcn_deploy.errors import InputError
from fcn_deploy.infer import InferConfig, infer_folder

JOB_TIMEOUT = 240  # seconds; a CLI run that takes longer fails the test instead of hanging it


def masks(out: Path) -> dict[str, np.ndarray]:
    """Every mask under ``out`` by relative path (checked to be a palette PNG)."""
    found = {}
    for path in sorted(out.rglob("*.png")):
        with Image.open(path) as image:
            assert image.mode == "P"
            found[path.relative_to(out).as_posix()] = np.asarray(image)
    return found


def rows(out: Path) -> dict[str, dict]:
    """The summary's records by path, without the timings (which differ between runs)."""
    images = json.loads((out / "summary.json").read_text())["images"]
    assert len({r["path"] for r in images}) == len(images), "a path appears twice in the summary"
    return {r["path"]: {k: v for k, v in r.items() if k != "milliseconds"} for r in images}


def leftovers(out: Path) -> list[str]:
    """Temporary files left in the output tree."""
    return sorted(p.name for p in out.rglob("*.part"))


def run_ray_job(prefix, model: Path, images: Path, out: Path, address: str, *options: str, timeout: float = JOB_TIMEOUT,
                **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(cli_command(prefix, "infer", str(model), str(images), "--out", str(out), "--device", "cpu",
                                      "--ray", address, *options),
                          env=hooked_env(**env), capture_output=True, text=True, timeout=timeout)


@contextlib.contextmanager
def started_job(prefix, model: Path, images: Path, out: Path, address: str, *, workers: int,
                first_masks: int) -> Iterator[subprocess.Popen]:
    """``infer --ray`` running in the background once it has written ``first_masks`` masks (or ended); killed on
    exit if still running."""
    command = cli_command(prefix, "infer", str(model), str(images), "--out", str(out), "--device", "cpu",
                          "--ray", address, "--workers", str(workers))
    job = subprocess.Popen(command, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: out.is_dir() and len(list(out.glob("*.png"))) >= first_masks or job.poll() is not None,
                 JOB_TIMEOUT, f"{first_masks} mask(s)")
        yield job
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()


def descendants_named(root_pid: int, marker: str) -> list[int]:
    """PIDs of the processes below ``root_pid`` whose command line contains ``marker``."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found = []
    for pid in parents:
        ancestor = parents.get(pid)
        while ancestor is not None and ancestor != root_pid:
            ancestor = parents.get(ancestor)
        if ancestor == root_pid:
            try:
                if marker in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                    found.append(pid)
            except OSError:
                continue
    return found


def one_image_renamed(tmp_path: Path, count: int, name: str) -> Path:
    """``tmp_path/in`` with ``count`` images, the second named ``name`` (the image a test hook acts on)."""
    images = tmp_path / "in"
    write_images(images, count)
    (images / "001.png").rename(images / name)
    return images


@contextlib.contextmanager
def stuck_job(command: list[str], env: dict[str, str], mark: Path, job_id: str) -> Iterator[subprocess.Popen]:
    """A CLI job running with one worker stuck (``mark`` exists); on leaving the block it is stopped by SIGTERM,
    must exit 143, and every process it started (all inherit ``FCN_TEST_JOB=job_id``) must end with it."""
    job = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: mark.exists() or job.poll() is not None, JOB_TIMEOUT, f"a worker stuck on {mark.name}")
        assert job.poll() is None, "the job ended before a worker got stuck"
        yield job
        job.send_signal(signal.SIGTERM)
        _, stderr = job.communicate(timeout=JOB_TIMEOUT)
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()
    assert job.returncode == 143, stderr
    # none is left to PID 1
    wait_for(lambda: processes_with("FCN_TEST_JOB", job_id) == [], 30, "the job's processes to end")


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


# --- without Ray ---------------------------------------------------------------------------------


@pytest.mark.parametrize("changes, message", [
    ({"workers": 0}, "workers must be a positive integer"), ({"cpus_per_worker": 0}, "cpus per worker must be positive"),
    ({"gpus_per_worker": -1}, "gpus per worker"), ({"address": " "}, "address is empty"),
    ({"address": "127.0.0.1:70000"}, "port from 1 to 65535"), ({"address": "ray://head:0"}, "port from 1 to 65535"),
    ({"address": "head"}, "not HOST:PORT"), ({"address": ":6379"}, "not HOST:PORT"),
])
def test_ray_config_rejects_bad_values(changes, message):
    with pytest.raises(InputError, match=message):
        RayConfig(**changes)


def test_threads_are_the_cpus_rounded_up():
    assert (RayConfig(cpus_per_worker=0.5).threads, RayConfig(cpus_per_worker=2).threads,
            RayConfig(cpus_per_worker=2.5).threads) == (1, 2, 3)


def test_cli_rejects_worker_options_without_ray_and_cuda_without_gpus(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "m.onnx").write_bytes(b"x")
    assert run(["infer", str(tmp_path / "m.onnx"), str(tmp_path / "in"), "--out", str(tmp_path / "o"),
                "--workers", "3"]) == 1
    assert "--workers only apply with --ray" in capsys.readouterr().err
    assert run(["infer", str(tmp_path / "m.onnx"), str(tmp_path / "in"), "--out", str(tmp_path / "o"),
                "--device", "cuda", "--ray", "local"]) == 1
    assert "--gpus-per-worker" in capsys.readouterr().err


def test_an_address_where_nothing_answers_fails_at_once_with_the_address(netns_prefix, tiny_onnx, tmp_path):
    """Ray retries a dead head for ever; the job names the address and the fix instead (bounded: no head here)."""
    images = tmp_path / "in"
    write_images(images, 1)
    address = f"127.0.0.1:{free_loopback_port()}"  # free a moment ago: nothing listens there
    result = run_ray_job(netns_prefix, tiny_onnx, images, tmp_path / "out", address, timeout=120)
    assert result.returncode == 2, result.stderr
    assert f"could not connect to the Ray cluster at {address}" in result.stderr and "does not answer" in result.stderr
    assert "fix: check the head's address" in result.stderr


def test_a_worker_larger_than_the_local_node_is_refused_before_ray_starts(netns_prefix, tiny_onnx, ray_tmp,
                                                                          tmp_path):
    images = tmp_path / "in"
    write_images(images, 1)
    temp_root = ray_tmp("w")
    result = run_ray_job(netns_prefix, tiny_onnx, images, tmp_path / "out", "local", "--cpus-per-worker", "4096",
                         timeout=120, TMPDIR=str(temp_root))
    assert result.returncode == 1, result.stderr
    assert "--cpus-per-worker 4096: one worker needs 4096 CPUs but the local Ray node has" in result.stderr
    assert "fix: use at most --cpus-per-worker" in result.stderr
    assert list(temp_root.iterdir()) == [] and not (tmp_path / "out").exists()  # no Ray, no output folder


def test_a_worker_shape_is_checked_for_gpus_too():
    with pytest.raises(InputError, match="needs 1 GPUs but the local Ray node has 0") as info:
        check_worker_fits(RayConfig(gpus_per_worker=1), {"CPU": 2.0, "GPU": 0.0})
    assert "leave --gpus-per-worker at 0" in info.value.hint
    check_worker_fits(RayConfig(cpus_per_worker=2, gpus_per_worker=0.5), {"CPU": 2.0, "GPU": 1.0})


def test_a_worker_no_node_of_a_running_cluster_can_hold_is_refused():
    """On a cluster (not local), Ray would wait for ever for a node with room: one node must hold a whole worker."""
    from types import SimpleNamespace

    from fcn_deploy.cluster import check_worker_fits_a_node

    nodes = [{"Alive": True, "Resources": {"CPU": 8.0}}, {"Alive": True, "Resources": {"CPU": 2.0, "GPU": 1.0}},
             {"Alive": False, "Resources": {"CPU": 64.0, "GPU": 8.0}}]
    ray = SimpleNamespace(nodes=lambda: nodes)
    check_worker_fits_a_node(RayConfig(cpus_per_worker=8), ray)
    check_worker_fits_a_node(RayConfig(cpus_per_worker=2, gpus_per_worker=1), ray)
    with pytest.raises(InputError, match="needs 4 CPUs but the roomiest node of the cluster has 2"):
        check_worker_fits_a_node(RayConfig(cpus_per_worker=4, gpus_per_worker=1), ray)  # no node has both
    with pytest.raises(InputError, match="needs 2 GPUs but the roomiest node of the cluster has 1"):
        check_worker_fits_a_node(RayConfig(gpus_per_worker=2), ray)  # the dead node does not count


def test_model_files_travel_with_the_sidecar(tmp_path):
    (tmp_path / "fcn.onnx").write_bytes(b"graph")
    assert model_files(tmp_path / "fcn.onnx") == {"fcn.onnx": b"graph"}
    (tmp_path / "fcn.onnx.json").write_text("{}")
    assert sorted(model_files(tmp_path / "fcn.onnx")) == ["fcn.onnx", "fcn.onnx.json"]
    with pytest.raises(InputError, match="model file not found"):
        model_files(tmp_path / "missing.onnx")


def test_model_copies_of_gone_workers_are_swept_and_live_ones_kept(tmp_path):
    finished = subprocess.Popen(["true"])
    finished.wait()
    zombie = subprocess.Popen(["true"])  # exited but not reaped: its PID still answers signal 0
    wait_for(lambda: Path(f"/proc/{zombie.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z", 10,
             "the child to exit")
    try:
        gone = tmp_path / f"{MODEL_COPY_PREFIX}{finished.pid}-abc"
        unreaped = tmp_path / f"{MODEL_COPY_PREFIX}{zombie.pid}-def"
        live = tmp_path / f"{MODEL_COPY_PREFIX}{os.getpid()}-ghi"
        unrelated = tmp_path / f"{MODEL_COPY_PREFIX}notapid"
        for folder in (gone, unreaped, live, unrelated):
            folder.mkdir()
            (folder / "model.onnx").write_bytes(b"x")
        assert sorted(remove_orphaned_model_copies(tmp_path)) == sorted([gone, unreaped])
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, unrelated.name])
    finally:
        zombie.wait()


# a stand-in for ``ray start``: one child in a process group of its own and one already left to PID 1 whose command
# line names the node's temp folder (as Ray's workers and agents are), both deaf to SIGTERM; the node ends on SIGTERM
FAKE_NODE = """
import os, signal, subprocess, sys, time
deaf = [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"]
grouped = subprocess.Popen(deaf, start_new_session=True, stdout=subprocess.DEVNULL)
launcher = subprocess.Popen([sys.executable, "-c", "import subprocess, sys; "
                             "print(subprocess.Popen(sys.argv[1:], start_new_session=True, stdout=subprocess.DEVNULL).pid)",
                             *deaf, sys.argv[1]],
                            stdout=subprocess.PIPE, text=True)
orphan = int(launcher.communicate()[0])
print(grouped.pid, orphan, flush=True)
signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
time.sleep(600)
"""


def test_stopping_a_node_kills_its_processes_in_other_groups_and_those_left_to_pid_1(tmp_path):
    from fcn_deploy.cluster import RayNode, _process_alive

    temp_dir = tmp_path / "node"
    temp_dir.mkdir()
    process = subprocess.Popen([sys.executable, "-c", FAKE_NODE, str(temp_dir)], stdout=subprocess.PIPE, text=True,
                               start_new_session=True)
    assert process.stdout is not None
    grouped, orphan = (int(pid) for pid in process.stdout.readline().split())
    try:
        RayNode(process, temp_dir, "127.0.0.1:1").stop(timeout=5)
        wait_for(lambda: not _process_alive(grouped) and not _process_alive(orphan), 30, "the node's processes to end")
    finally:
        for pid in (grouped, orphan):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _data_context() -> SimpleNamespace:
    """A stand-in for Ray Data's process-wide context, holding a caller's own settings."""
    return SimpleNamespace(enable_progress_bars=True, print_on_execution_start=True, max_errored_blocks=0)


def _stub_local_node(monkeypatch, ray, ray_data, context: SimpleNamespace) -> list:
    """``ray_session(LOCAL)`` with no Ray started: the node is ``true``, connecting and shutting down do nothing."""
    from fcn_deploy import cluster

    started = []
    monkeypatch.setattr(cluster, "start_node", lambda temp_dir, **_: started.append(temp_dir) or
                        cluster.RayNode(subprocess.Popen(["true"]), temp_dir, "127.0.0.1:1"))
    monkeypatch.setattr(cluster, "_connect", lambda *_: None)
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    monkeypatch.setattr(ray_data.DataContext, "get_current", lambda: context)
    return started


def test_a_session_puts_ray_datas_settings_back_as_the_caller_had_them(monkeypatch, ray_tmp):
    """Ray Data's context is the whole process's: the job's settings (no bars, dropped blocks) end with the job."""
    ray_data = pytest.importorskip("ray.data")
    import ray

    from fcn_deploy import cluster

    monkeypatch.setenv("TMPDIR", str(ray_tmp("t")))
    monkeypatch.setattr(cluster.tempfile, "tempdir", None)
    context = _data_context()
    _stub_local_node(monkeypatch, ray, ray_data, context)
    with cluster.ray_session(cluster.LOCAL):
        assert context == SimpleNamespace(enable_progress_bars=False, print_on_execution_start=False,
                                          max_errored_blocks=-1)
    assert context == _data_context()


def test_a_local_session_keeps_every_file_of_ray_in_its_own_temp_folder(monkeypatch, ray_tmp):
    """The driver's default Ray folder too (RAY_TMPDIR): nothing of the job lands in a shared, world-writable one."""
    ray_data = pytest.importorskip("ray.data")
    import ray

    from fcn_deploy import cluster

    temp_root = ray_tmp("t")
    monkeypatch.setenv("TMPDIR", str(temp_root))
    monkeypatch.setattr(cluster.tempfile, "tempdir", None)  # read TMPDIR again
    started = _stub_local_node(monkeypatch, ray, ray_data, _data_context())
    with cluster.ray_session(cluster.LOCAL):
        default = Path(ray._common.utils.get_default_ray_temp_dir())
        assert started and started[0] in default.parents and started[0].parent == temp_root
        assert started[0].stat().st_mode & 0o777 == 0o700
    assert list(temp_root.iterdir()) == []


def test_a_second_run_into_a_locked_out_is_refused_before_ray_starts(tiny_onnx, tmp_path):
    from fcn_deploy.cluster import infer_on_ray
    from fcn_deploy.fileio import folder_lock

    images, out = tmp_path / "in", tmp_path / "out"
    write_images(images, 2)
    out.mkdir()
    with folder_lock(out), pytest.raises(InputError, match="another fcn-deploy run"):
        infer_on_ray(tiny_onnx, images, out, InferConfig(device="cpu", progress=False), RayConfig())


def test_a_summary_that_would_replace_an_input_is_refused_before_ray_starts(tiny_onnx, tmp_path):
    from fcn_deploy.cluster import infer_on_ray

    images = tmp_path / "in"
    first = write_images(images, 2)[0]
    config = InferConfig(device="cpu", progress=False, summary=first)
    with pytest.raises(InputError, match="an input image"):
        infer_on_ray(tiny_onnx, images, tmp_path / "out", config, RayConfig())
    assert first.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # the image is untouched


def test_partial_outputs_of_the_job_are_removed(tmp_path):
    (tmp_path / "sub").mkdir()
    stale = [tmp_path / ".a.png.x1.part", tmp_path / "sub" / ".b.overlay.jpg.x2.part"]
    kept = [tmp_path / ".other.png.x3.part", tmp_path / "a.png"]
    for path in stale + kept:
        path.write_bytes(b"")
    remove_partial_outputs(tmp_path, ("a.jpg", "sub/b.png"), overlay=True)
    assert [p.exists() for p in stale + kept] == [False, False, True, True]


# --- on Ray (127.0.0.1, in a private network where possible) --------------------------------------


@pytest.mark.slow
def test_masks_and_summary_match_plain_infer(ray_head, netns_prefix, tiny_onnx, tmp_path):
    images = tmp_path / "in"
    write_images(images, 6)
    write_images(images / "nested", 2, size=(96, 64), start=6)
    plain = infer_folder(tiny_onnx, images, tmp_path / "plain",
                         InferConfig(device="cpu", recursive=True, overlay=True, progress=False))
    assert plain.count("ok") == 8
    stale = tmp_path / "ray" / "elsewhere" / ".old.png.k3j_x9q2.part"  # left by a killed run, not of this plan
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"")
    result = run_ray_job(netns_prefix, tiny_onnx, images, tmp_path / "ray", ray_head.address, "--recursive",
                         "--overlay", "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert not stale.exists()
    assert "segmented 8 images (0 skipped" in result.stdout
    assert masks(tmp_path / "ray").keys() == masks(tmp_path / "plain").keys()
    for name, labels in masks(tmp_path / "plain").items():
        assert np.array_equal(masks(tmp_path / "ray")[name], labels), name
    assert sorted(p.name for p in (tmp_path / "ray").rglob("*.overlay.jpg")) == \
        sorted(p.name for p in (tmp_path / "plain").rglob("*.overlay.jpg"))
    assert rows(tmp_path / "ray") == rows(tmp_path / "plain")
    summary = json.loads((tmp_path / "ray" / "summary.json").read_text())
    assert (summary["backend"], summary["device"]) == ("onnxruntime", "cpu")


@pytest.mark.slow
def test_mixed_folder_fails_only_the_bad_files(ray_head, netns_prefix, tiny_onnx, tmp_path, special_files):
    images = tmp_path / "in"
    good = write_images(images, 5)
    (images / "empty.jpg").write_bytes(b"")
    (images / "notes.png").write_text("not an image")
    data = good[0].read_bytes()
    (images / "truncated.png").write_bytes(data[: len(data) // 2])
    special_files.pipe(images / "pipe.png")  # a worker reading it would wait for a writer for ever
    result = run_ray_job(netns_prefix, tiny_onnx, images, tmp_path / "out", ray_head.address)
    assert result.returncode == 3, result.stderr
    for name in ("empty.jpg", "notes.png", "truncated.png"):
        assert f"error: {name}:" in result.stderr
    assert "error: pipe.png: is a named pipe" in result.stderr and special_files.opened_pipes == []
    records = rows(tmp_path / "out")
    assert {p for p, r in records.items() if r["status"] == "failed"} == {"empty.jpg", "notes.png", "truncated.png",
                                                                          "pipe.png"}
    assert sorted(masks(tmp_path / "out")) == [p.name for p in good]
    assert leftovers(tmp_path / "out") == []


@pytest.mark.slow
def test_a_worker_killed_mid_job_is_replaced_and_nothing_is_lost(ray_head, netns_prefix, tiny_onnx, tmp_path):
    images, out = tmp_path / "in", tmp_path / "out"
    count = 160
    write_images(images, count, size=(128, 160))
    with started_job(netns_prefix, tiny_onnx, images, out, ray_head.address, workers=2, first_masks=1) as job:
        workers = descendants_named(ray_head.process.pid, "MapWorker")
        assert job.poll() is None and workers, "the job ended before a worker could be killed"
        os.kill(workers[0], signal.SIGKILL)
        killed_at = len(list(out.glob("*.png")))
        stdout, stderr = job.communicate(timeout=JOB_TIMEOUT)
    assert job.returncode == 0, stderr
    assert killed_at < count
    assert f"segmented {count} images (0 skipped" in stdout
    records = rows(out)
    assert len(records) == count and {r["status"] for r in records.values()} == {"ok"}
    assert len(masks(out)) == count
    assert leftovers(out) == []


@pytest.mark.slow
def test_a_job_stopped_by_sigterm_saves_its_summary_and_resumes(ray_head, netns_prefix, tiny_onnx, tmp_path):
    images, out = tmp_path / "in", tmp_path / "out"
    count = 120
    write_images(images, count, size=(128, 160))
    with started_job(netns_prefix, tiny_onnx, images, out, ray_head.address, workers=1, first_masks=3) as job:
        assert job.poll() is None, "the job ended before it could be stopped"
        job.send_signal(signal.SIGTERM)  # what a scheduler sends to end a job
        _, stderr = job.communicate(timeout=JOB_TIMEOUT)
    assert job.returncode == 143, stderr
    assert "interrupted: " in stderr and "run the same command again to resume" in stderr
    # images whose records had not reached the driver are pending, though a worker may have written their mask
    statuses = [r["status"] for r in rows(out).values()]
    assert len(statuses) == count and set(statuses) <= {"ok", "pending"} and "pending" in statuses
    done = len(masks(out))
    assert statuses.count("ok") <= done < count
    assert json.loads((out / "summary.json").read_text())["interrupted"] == "SIGTERM"
    result = run_ray_job(netns_prefix, tiny_onnx, images, out, ray_head.address)
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())["totals"]
    assert summary["skipped"] >= done and summary["skipped"] + summary["segmented"] == count
    assert len(masks(out)) == count and leftovers(out) == []


@pytest.mark.slow
def test_two_nodes_on_this_machine(ray_head, netns_prefix, short_tmp, tiny_onnx, tmp_path):
    from fcn_deploy.cluster import short_temp_dir, start_node

    if not netns_prefix:
        pytest.skip("a second node binds 127.0.0.1 only inside a private network namespace (needs unshare -n)")
    second = start_node(short_temp_dir(short_tmp), head=ray_head.address, num_cpus=1, prefix=netns_prefix)
    try:
        images = tmp_path / "in"
        write_images(images, 12)
        # three workers of one CPU each need the head's two CPUs and the second node's one
        result = run_ray_job(netns_prefix, tiny_onnx, images, tmp_path / "out", ray_head.address,
                             "--workers", "3", "--cpus-per-worker", "1")
        worker_logs = list(second.temp_dir.glob("session_*/logs/worker-*"))
    finally:
        second.stop()
    assert result.returncode == 0, result.stderr
    assert len(masks(tmp_path / "out")) == 12
    assert worker_logs, "no worker ran on the second node"


@pytest.mark.slow
def test_local_ray_started_and_stopped_for_the_job(netns_prefix, ray_tmp, tiny_onnx, tmp_path):
    images = tmp_path / "in"
    write_images(images, 4)
    plain = infer_folder(tiny_onnx, images, tmp_path / "plain", InferConfig(device="cpu", progress=False))
    temp_root = ray_tmp("l")  # short: Ray's socket paths live inside its temp folder
    finished = subprocess.Popen(["true"])
    finished.wait()
    (temp_root / f"{MODEL_COPY_PREFIX}{finished.pid}-x").mkdir()  # left by a worker Ray killed while it started
    result = run_ray_job(netns_prefix, tiny_onnx, images, tmp_path / "out", "local", TMPDIR=str(temp_root))
    assert result.returncode == 0, result.stderr
    assert plain.count("ok") == 4 and rows(tmp_path / "out") == rows(tmp_path / "plain")
    # Ray's temp folder and every worker's model copy went with the job
    assert [p.name for p in temp_root.iterdir() if p.is_dir()] == []


@pytest.mark.slow
def test_a_poison_image_that_kills_its_worker_every_time_fails_alone(netns_prefix, ray_tmp, tiny_onnx,
                                                                     tmp_path):
    images, out = one_image_renamed(tmp_path, 6, "poison.png"), tmp_path / "out"
    temp_root = ray_tmp("p")
    result = run_ray_job(netns_prefix, tiny_onnx, images, out, "local", "--workers", "2",
                         TMPDIR=str(temp_root), FCN_TEST_KILL_ON_OPEN="poison.png")
    assert result.returncode == 3, result.stderr
    assert "error: poison.png: its worker process died each of the 3 times" in result.stderr
    records = rows(out)
    assert records["poison.png"]["status"] == "failed"
    assert {p for p, r in records.items() if r["status"] == "ok"} == {"000.png", "002.png", "003.png", "004.png",
                                                                      "005.png"}
    assert leftovers(out) == [] and [p.name for p in temp_root.iterdir() if p.is_dir()] == []  # Ray's went with the job


@pytest.mark.slow
def test_sigterm_during_a_stuck_worker_stops_every_process_of_the_local_ray(netns_prefix, ray_tmp, tiny_onnx,
                                                                            tmp_path):
    images, out = one_image_renamed(tmp_path, 4, "stuck.png"), tmp_path / "out"
    temp_root, mark, job_id = ray_tmp("s"), tmp_path / "stuck", uuid.uuid4().hex
    command = cli_command(netns_prefix, "infer", str(tiny_onnx), str(images), "--out", str(out), "--device", "cpu",
                          "--ray", "local")
    env = hooked_env(TMPDIR=str(temp_root), FCN_TEST_HANG_ON_OPEN="stuck.png", FCN_TEST_HANG_MARK=str(mark),
                     FCN_TEST_JOB=job_id)
    with stuck_job(command, env, mark, job_id):
        assert len(processes_with("FCN_TEST_JOB", job_id)) > 3  # the driver, the node's servers, the workers
    assert [p.name for p in temp_root.iterdir() if p.is_dir()] == []  # Ray's files (the driver's too) went with it
    assert json.loads((out / "summary.json").read_text())["interrupted"] == "SIGTERM"


def listening_addresses(pids: list[int]) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket listening in one of ``pids`` (Linux /proc: the sockets the processes
    hold open, looked up in their network namespace's tables)."""
    inodes: set[str] = set()
    for pid in pids:
        with contextlib.suppress(OSError), os.scandir(f"/proc/{pid}/fd") as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    target = os.readlink(entry.path)
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
    found = set()
    for pid in pids:
        for table in ("tcp", "tcp6"):
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                    fields = line.split()
                    if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                        address, port = fields[1].split(":")
                        raw = bytes.fromhex(address)
                        words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))  # host-order words
                        host = ipaddress.ip_address(words)
                        host = getattr(host, "ipv4_mapped", None) or host  # gRPC's [::ffff:127.0.0.1]
                        found.add((str(host), int(port, 16)))
    return found


def environment_of(pid: int) -> dict[str, str]:
    with contextlib.suppress(OSError):
        pairs = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        return dict(p.decode(errors="replace").split("=", 1) for p in pairs if b"=" in p)
    return {}


@pytest.mark.slow
def test_local_ray_listens_on_loopback_only_checks_its_own_token_and_leaves_home_alone(netns_prefix, ray_tmp,
                                                                                     tiny_onnx, tmp_path):
    """``--ray local``'s promise: every server of the job's Ray binds 127.0.0.1, token authentication is on with a
    token the job made (none is inherited here), and nothing is written in the user's home."""
    images, out, home = one_image_renamed(tmp_path, 3, "stuck.png"), tmp_path / "out", tmp_path / "home"
    home.mkdir()
    temp_root, mark, job_id = ray_tmp("h"), tmp_path / "stuck", uuid.uuid4().hex
    env = hooked_env(TMPDIR=str(temp_root), FCN_TEST_HANG_ON_OPEN="stuck.png", FCN_TEST_HANG_MARK=str(mark),
                     FCN_TEST_JOB=job_id, HOME=str(home))
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        env.pop(name, None)  # the job must turn authentication on by itself
    command = cli_command(netns_prefix, "infer", str(tiny_onnx), str(images), "--out", str(out), "--device", "cpu",
                          "--ray", "local")
    with stuck_job(command, env, mark, job_id):
        pids = processes_with("FCN_TEST_JOB", job_id)
        listening = listening_addresses(pids)
        assert len(listening) >= 2, listening  # at least the GCS and the raylet
        assert {host for host, _ in listening} == {"127.0.0.1"}, listening
        commands = {}
        for pid in pids:
            with contextlib.suppress(OSError):  # a worker starting or ending meanwhile
                commands[pid] = Path(f"/proc/{pid}/cmdline").read_bytes()
        # Ray's node, servers and workers (the driver got no token from this test: it made one for them)
        ray_processes = [environment_of(pid) for pid, command in commands.items()
                         if b"ray" in command and b"fcn_deploy.cli" not in command]
        servers = [environment_of(pid) for pid, command in commands.items()
                   if b"gcs_server" in command or b"raylet" in command]
        assert len(ray_processes) > 3 and servers
        tokens = {e["RAY_AUTH_TOKEN"] for e in ray_processes if "RAY_AUTH_TOKEN" in e}
        assert len(tokens) == 1, tokens  # one token for the whole node ...
        token = tokens.pop()
        assert len(token) == 64 and all(e.get("RAY_AUTH_TOKEN") == token for e in servers)  # ... its servers hold it
        assert token != loopback_environment()["RAY_AUTH_TOKEN"]  # ... made by the job, not inherited from here
        head = [environment_of(pid) for pid, command in commands.items() if b"--head" in command]
        assert head and all(e.get("RAY_AUTH_MODE") == "token" for e in head)  # the head checks it
    written = sorted(str(p.relative_to(home)) for p in home.rglob("*"))
    assert written == [], f"the job wrote into HOME: {written}"  # nothing, not even ~/.ray


def test_a_temp_folder_too_long_for_rays_sockets_is_refused_and_removed(tmp_path):
    from fcn_deploy.cluster import MAX_TEMP_PARENT_CHARS, short_temp_dir

    parent = tmp_path / ("p" * MAX_TEMP_PARENT_CHARS)
    parent.mkdir()
    with pytest.raises(InputError, match="too long for Ray's socket paths") as info:
        short_temp_dir(parent)
    assert f"at most {MAX_TEMP_PARENT_CHARS} characters" in (info.value.hint or "")
    assert list(parent.iterdir()) == []  # the folder it made is gone
    short = Path(tempfile.mkdtemp(prefix="p", dir="/tmp"))
    try:
        assert len(str(short)) <= MAX_TEMP_PARENT_CHARS and short_temp_dir(short).parent == short
    finally:
        shutil.rmtree(short)
