"""Segment a folder on a Ray cluster (``fcn-deploy infer ... --ray ADDRESS``) with the same results as plain infer.

The driver plans the job exactly as plain ``infer`` does (paths only, never image data), hands the model's bytes
to Ray's object store once, and streams the image paths through Ray Data to a pool of actors. Each actor holds one
backend session and runs infer's per-image step (decode, segment, write atomically) on the paths it gets,
returning one status record per image; the driver merges the records, deduplicated by path, into the same
summary. ``local`` starts a private Ray bound to 127.0.0.1 for the job and stops it afterwards.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import pickle
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from fcn_deploy.contract import sidecar_path
from fcn_deploy.deps import require
from fcn_deploy.devices import cuda_device_count
from fcn_deploy.errors import FcnDeployError, InputError, MissingComponentError, describe
from fcn_deploy.infer import (
    FolderJob,
    FolderRunner,
    ImageRecord,
    InferConfig,
    InferSummary,
    ProgressReporter,
    RunProgress,
    image_job,
    planned_folder,
    process_image,
    run_folder_job,
)
from fcn_deploy.runtime import open_backend
from fcn_deploy.segmenter import Segmenter

LOCAL = "local"
AUTO = "auto"
RAY_CLIENT_SCHEME = "ray://"
CONNECT_TIMEOUT_S = 15.0  # a head that does not accept a connection within this is reported, not retried for ever
CALL_TRIES = 3  # runs of a call whose worker dies before its images are given up
NODE_STOP_TIMEOUT_S = 10.0  # a stopped job's node gets this long to end its processes before they are killed
MAX_PATHS_PER_BLOCK = 256  # image paths per Ray Data block (fewer for small jobs, so every worker gets some)
# Ray puts Unix sockets inside its temp folder (<temp>/session_<date>_<pid>/sockets/plasma_store); Linux caps a
# socket path at 107 bytes, so the folder itself may take at most this many
MAX_LOCAL_TEMP_CHARS = 45
MAX_TEMP_PARENT_CHARS = MAX_LOCAL_TEMP_CHARS - len("/rayXXXXXXXX")  # the folder short_temp_dir makes it in
# a worker's copy of the model: <temp>/fcn-deploy-model-<worker PID>-<random>, removed once the model is open;
# Ray kills a worker that is still starting when the job ends, so a copy whose PID is gone is swept later
MODEL_COPY_PREFIX = "fcn-deploy-model-"


@dataclass(frozen=True)
class RayConfig:
    """Where and how wide the job runs.

    ``address`` is ``local`` (a Ray on this machine, bound to 127.0.0.1, started and stopped for the job) or a
    running cluster's address (``auto``, ``HOST:PORT`` of the head, ``ray://HOST:PORT``). Each of ``workers``
    actors reserves ``cpus_per_worker`` CPUs (fractional allowed) and ``gpus_per_worker`` GPUs and runs
    ceil(cpus_per_worker) intra-op threads. The fractional default keeps a pool from holding every CPU of a
    small node, which starves Ray Data's own tasks.
    """

    address: str = LOCAL
    workers: int = 2
    cpus_per_worker: float = 0.5
    gpus_per_worker: float = 0.0
    images_per_call: int = 4  # images per actor call: small, so a worker lost mid-call redoes little

    def __post_init__(self) -> None:
        if not self.address.strip():
            raise InputError("the Ray address is empty", f"pass '{LOCAL}' or the head's address, e.g. auto or HOST:6379")
        head_endpoint(self.address)
        for name in ("workers", "images_per_call"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name.replace('_', ' ')} must be a positive integer, got {value!r}")
        if not self.cpus_per_worker > 0:
            raise InputError(f"cpus per worker must be positive, got {self.cpus_per_worker}",
                             "use e.g. 0.5 (fractional CPUs are fine) or the threads each worker should run")
        if self.gpus_per_worker < 0:
            raise InputError(f"gpus per worker must be 0 or positive, got {self.gpus_per_worker}")

    @property
    def threads(self) -> int:
        """Intra-op CPU threads of each worker's backend session."""
        return max(1, math.ceil(self.cpus_per_worker))


def head_endpoint(address: str) -> tuple[str, int] | None:
    """(host, port) of a ``HOST:PORT`` or ``ray://HOST:PORT`` address; None for ``local`` and ``auto``.

    InputError for anything else, or a port outside 1-65535 (Ray would retry such an address for ever)."""
    if address in (LOCAL, AUTO):
        return None
    rest = address[len(RAY_CLIENT_SCHEME):] if address.startswith(RAY_CLIENT_SCHEME) else address
    host, _, port = rest.rpartition(":")
    if not host.strip("[]") or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise InputError(f"the Ray address {address!r} is not HOST:PORT with a port from 1 to 65535",
                         f"pass '{LOCAL}', '{AUTO}' or the head's address, e.g. 10.0.0.5:6379 or ray://10.0.0.5:10001")
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class WorkerSetup:
    """Everything a worker needs, sent once: the model's files in the object store and the job's options."""

    model_files: list[Any]  # [ObjectRef of {file name: bytes}]: in a list, so Ray hands the worker the reference
    model_name: str
    in_dir: str  # absolute
    out_dir: str  # absolute
    config: InferConfig
    threads: int


class SegmentWorker:
    """A Ray Data actor: one backend session; turns a batch of image paths into their status records."""

    def __init__(self, setup: WorkerSetup) -> None:
        ray = require("ray")
        files: dict[str, bytes] = ray.get(setup.model_files[0])
        remove_orphaned_model_copies()
        # every backend reads the whole model when it opens it, so the copy on this node's disk can go at once
        with tempfile.TemporaryDirectory(prefix=f"{MODEL_COPY_PREFIX}{os.getpid()}-") as folder:
            for name, data in files.items():
                (Path(folder) / name).write_bytes(data)
            backend = open_backend(Path(folder) / setup.model_name, setup.config.device, setup.config.backend,
                                   threads=setup.threads)
        self.segmenter = Segmenter(backend, setup.config.segmenter)
        self.setup = setup

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        """``{'path': [relative, ...]}`` -> one JSON record per image, with the backend that made it.

        An error that is not one image's (a broken model) comes back pickled in ``fatal`` rather than raised:
        the pool drops a failed call's images (they are retried, then counted as lost), and the driver stops."""
        setup, backend = self.setup, self.segmenter.backend
        in_dir, out_dir = Path(setup.in_dir), Path(setup.out_dir)
        try:
            records = [process_image(self.segmenter, image_job(in_dir, out_dir, str(relative), setup.config.overlay),
                                     setup.config) for relative in batch["path"]]
        except Exception as exc:
            return {"record": [""], "backend": [backend.name], "device": [backend.device], "fatal": [_pickled(exc)]}
        return {"record": [json.dumps(asdict(record)) for record in records],
                "backend": [backend.name] * len(records), "device": [backend.device] * len(records),
                "fatal": [b""] * len(records)}


def _pickled(exc: BaseException) -> bytes:
    """``exc`` pickled for the driver, or a RuntimeError with its text when it cannot be pickled."""
    try:
        return pickle.dumps(exc)
    except Exception:
        return pickle.dumps(RuntimeError(describe(exc)))


# --- the driver ----------------------------------------------------------------------------------


def infer_on_ray(
    model: str | os.PathLike[str] | None,
    in_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    config: InferConfig = InferConfig(),
    cluster: RayConfig = RayConfig(),
) -> InferSummary:
    """``infer_folder`` on a Ray cluster: the same checks, lock, masks, overlays and summary, and the same stop on
    Ctrl-C or SIGTERM; OUT must be writable by every node.

    Raises BatchFailure (after writing the summary) if any image failed, Interrupted (after writing it) when stopped.
    """
    _check_devices(config, cluster)
    if cluster.address == LOCAL:
        check_worker_fits(cluster, local_node_resources())
    with planned_folder(model, in_dir, out_dir, config) as job:
        return run_folder_job(job, config, _segment_on_ray(config, cluster))


def _segment_on_ray(config: InferConfig, cluster: RayConfig) -> FolderRunner:
    """The runner of a cluster run: the model to the object store once, the image paths through the actor pool."""

    def run(job: FolderJob, reporter: ProgressReporter, progress: RunProgress) -> None:
        if not job.plan.todo:
            return
        files = model_files(job.model)
        try:
            with ray_session(cluster.address) as ray:
                if cluster.address != LOCAL:  # a local node was checked before it started
                    check_worker_fits_a_node(cluster, ray)
                setup = WorkerSetup([ray.put(files)], job.model.name, str(job.in_dir.resolve()),
                                    str(job.out_dir.resolve()), config, cluster.threads)
                del files
                _run_pool(ray, job.plan.todo, setup, cluster, reporter, progress)
        finally:  # also when stopped: workers killed mid-write leave temporaries
            remove_partial_outputs(job.out_dir, job.plan.todo, config.overlay)

    return run


def _check_devices(config: InferConfig, cluster: RayConfig) -> None:
    """A CUDA run needs GPUs reserved for the workers: Ray hides every GPU from an actor that reserved none."""
    if config.device == "cuda" and cluster.gpus_per_worker == 0:
        raise InputError("--device cuda with --gpus-per-worker 0: Ray hides the GPUs from workers that reserve none",
                         "reserve GPUs, e.g. --gpus-per-worker 1 (or 0.5 to share one GPU between two workers)")


def local_node_resources() -> dict[str, float]:
    """The CPUs and GPUs a ``local`` node gets: the CPUs Ray counts here (a container's limit included) and the
    GPUs the NVIDIA driver reports. Given to the node explicitly, so the worker shape is checked against what
    Ray schedules on."""
    try:
        from ray._private.utils import get_num_cpus  # Ray's own count (cgroup limits), as ``ray start`` uses it

        cpus = float(get_num_cpus())
    except (ImportError, AttributeError):
        cpus = float(len(os.sched_getaffinity(0)))
    return {"CPU": cpus, "GPU": float(cuda_device_count() or 0)}


def check_worker_fits(cluster: RayConfig, node: dict[str, float], where: str = "the local Ray node") -> None:
    """Refuse a worker that needs more CPUs or GPUs than the node has: Ray would wait for ever to place it."""
    for resource, option, wanted in (("CPU", "--cpus-per-worker", cluster.cpus_per_worker),
                                     ("GPU", "--gpus-per-worker", cluster.gpus_per_worker)):
        have = node.get(resource, 0.0)
        if wanted > have:
            raise InputError(
                f"{option} {wanted:g}: one worker needs {wanted:g} {resource}s but {where} has {have:g}; "
                "Ray would wait for ever to place it",
                f"use at most {option} {have:g} (fractions share one), or run on a cluster with larger nodes "
                "(--ray HEAD:PORT)" if have else f"leave {option} at 0, or run on a cluster with {resource}s")


def check_worker_fits_a_node(cluster: RayConfig, ray: ModuleType) -> None:
    """On a running cluster: refuse a worker that no alive node can hold (checked against the roomiest one)."""
    nodes = [node.get("Resources", {}) for node in ray.nodes() if node.get("Alive")]
    fitting = [node for node in nodes if node.get("CPU", 0.0) >= cluster.cpus_per_worker
               and node.get("GPU", 0.0) >= cluster.gpus_per_worker]
    if not fitting:
        roomiest = max(nodes, key=lambda node: (node.get("GPU", 0.0), node.get("CPU", 0.0)), default={})
        check_worker_fits(cluster, roomiest, "the roomiest node of the cluster")


def model_files(model_path: Path) -> dict[str, bytes]:
    """The model file and its JSON sidecar (when it has one), by file name: what a worker needs to open it."""
    if not model_path.is_file():
        raise InputError(f"model file not found: {model_path}")
    files = {model_path.name: model_path.read_bytes()}
    sidecar = sidecar_path(model_path)
    if sidecar.is_file():
        files[sidecar.name] = sidecar.read_bytes()
    return files


def remove_orphaned_model_copies(temp_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Delete the model copies in ``temp_dir`` (default: this process's temp folder) whose worker is gone."""
    removed = []
    folder = Path(temp_dir) if temp_dir is not None else Path(tempfile.gettempdir())
    with contextlib.suppress(OSError):
        for entry in folder.iterdir():
            owner = _model_copy_owner(entry.name)
            if owner is not None and not _process_alive(owner) and entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
    return removed


def _model_copy_owner(name: str) -> int | None:
    """The PID in a model copy's folder name, or None for any other name."""
    if not name.startswith(MODEL_COPY_PREFIX):
        return None
    pid = name[len(MODEL_COPY_PREFIX):].split("-", 1)[0]
    return int(pid) if pid.isdigit() else None


def _process_alive(pid: int) -> bool:
    """Whether a process with this PID runs (one owned by another user counts; a killed one not yet reaped not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):  # Linux: a zombie is dead, though its PID still answers
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    return True


def _run_pool(ray: ModuleType, todo: tuple[str, ...], setup: WorkerSetup, cluster: RayConfig,
              reporter: ProgressReporter, progress: RunProgress) -> None:
    """Stream ``todo`` through the actor pool, adding each image's first record and the backend to ``progress``.

    A call whose worker dies is retried on a restarted worker, ``CALL_TRIES`` times at most (Ray Data's default
    is for ever). Images whose calls died that often are run once more one by one, each alone on a worker, so
    that an image that kills its worker every time (a poison image) fails alone and the rest are segmented.
    """
    per_block = max(1, min(MAX_PATHS_PER_BLOCK, len(todo) // (4 * cluster.workers)))
    left = _stream(ray, todo, setup, cluster, reporter, progress, per_block, cluster.images_per_call, in_flight=None)
    if left:
        left = _stream(ray, left, setup, cluster, reporter, progress, 1, 1, in_flight=1)
    error = (f"its worker process died each of the {CALL_TRIES} times it segmented this image (a crash in the "
             "decoder or the runtime, or the memory limit); the image was given up")
    for relative in left:
        progress.records.append(ImageRecord(relative, "failed", error=error))
        reporter.error(relative, error)
        reporter.advance(False)


def _stream(ray: ModuleType, todo: tuple[str, ...], setup: WorkerSetup, cluster: RayConfig,
            reporter: ProgressReporter, progress: RunProgress, per_block: int, batch_size: int,
            in_flight: int | None) -> tuple[str, ...]:
    """One pass of ``todo`` through a pool of ``cluster.workers`` actors; the images that got no record (their
    calls' workers died ``CALL_TRIES`` times). ``in_flight=1`` gives each worker one call at a time, so a dying
    worker takes no other image's call with it."""
    pyarrow = require("pyarrow")
    blocks = [pyarrow.table({"path": list(todo[start:start + per_block])}) for start in range(0, len(todo), per_block)]
    pool = ray.data.ActorPoolStrategy(size=cluster.workers, **({} if in_flight is None else
                                                               {"max_tasks_in_flight_per_actor": in_flight}))
    with warnings.catch_warnings():  # Ray 2.60 (the extra's pin) takes an actor's restart and retry limits only
        warnings.filterwarnings("ignore", "`ray_remote_args` is deprecated")  # this way, and warns of 2.64
        dataset = ray.data.from_arrow(blocks).map_batches(
            SegmentWorker,
            fn_constructor_kwargs={"setup": setup},
            compute=pool,
            batch_size=batch_size,
            batch_format="numpy",
            num_cpus=cluster.cpus_per_worker,
            num_gpus=cluster.gpus_per_worker or None,
            max_restarts=-1,  # a lost worker is always replaced ...
            max_task_retries=CALL_TRIES - 1,  # ... but a call is given up after CALL_TRIES deaths
        )
    seen = {record.path for record in progress.records}
    fatal = None
    try:
        for row in dataset.iter_rows():
            if row["fatal"]:
                fatal = pickle.loads(row["fatal"])  # from our own worker, as Ray's own results are
                break
            record = ImageRecord(**json.loads(row["record"]))
            progress.backend, progress.device = str(row["backend"]), str(row["device"])
            if record.path in seen:  # a retried call can return an image twice: it was written once either way
                continue
            seen.add(record.path)
            progress.records.append(record)
            if record.error:
                reporter.error(record.path, record.error)
            reporter.advance(record.status == "ok")
    except Exception as exc:
        raise _our_error(exc) from exc
    if fatal is not None:
        raise fatal
    return tuple(relative for relative in todo if relative not in seen)


def _our_error(exc: BaseException) -> BaseException:
    """Our own error (a broken model, a missing component) when a worker raised one, else ``exc``."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, FcnDeployError):
            return current
        current = getattr(current, "cause", None) or current.__cause__
    return exc


def remove_partial_outputs(out_dir: Path, todo: tuple[str, ...], overlay: bool) -> None:
    """Delete temporary files that a worker killed mid-write left beside this job's outputs."""
    names: dict[Path, set[str]] = {}
    for relative in todo:
        job = image_job(Path("."), out_dir, relative, overlay)
        for target in (job.mask, job.overlay):
            if target is not None:
                names.setdefault(target.parent, set()).add(f".{target.name}.")
    for folder, prefixes in names.items():
        with contextlib.suppress(OSError), os.scandir(folder) as entries:
            for entry in entries:
                name = entry.name
                if name.startswith(".") and name.endswith(".part") and any(name.startswith(p) for p in prefixes):
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)


# --- connecting to Ray ---------------------------------------------------------------------------

_PROCESS_TOKEN = secrets.token_hex(32)  # one per process: Ray's token loader keeps the first token it reads


def loopback_environment() -> dict[str, str]:
    """Environment for a Ray that listens on 127.0.0.1 only, sends no usage statistics and checks a token.

    Ray replaces a node address of 127.0.0.1 with the machine's outward address unless told that the cluster is
    one machine (the variable for that is named after Windows and macOS but is read everywhere); its servers
    then bind 127.0.0.1 alone. Token authentication is on, with a token made here and never written to
    ``~/.ray``, unless RAY_AUTH_MODE is already set (then Ray's own token settings apply).
    """
    env = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
    if "RAY_AUTH_MODE" not in os.environ:
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=_PROCESS_TOKEN)
    return env


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the block, then restore them."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def short_temp_dir(parent: str | os.PathLike[str] | None = None) -> Path:
    """A new temp folder for one Ray node, short enough for Ray's socket paths (a stale one could make Ray
    join a dead cluster, so every node gets its own)."""
    folder = Path(tempfile.mkdtemp(prefix="ray", dir=parent))
    if len(str(folder)) > MAX_LOCAL_TEMP_CHARS:
        shutil.rmtree(folder, ignore_errors=True)
        raise InputError(f"the temporary folder {folder} is too long for Ray's socket paths",
                         f"point TMPDIR at a folder of at most {MAX_TEMP_PARENT_CHARS} characters, e.g. /tmp")
    return folder


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class RayNode:
    """One Ray node on this machine (a ``ray start --block`` process bound to 127.0.0.1); ``stop`` ends it."""

    process: subprocess.Popen
    temp_dir: Path
    address: str  # the head's address (HOST:PORT)
    output: list[str] = field(default_factory=list)

    def processes(self) -> set[tuple[int, str]]:
        """(PID, start time) of every process of the node: those below ``ray start``, and those whose command line
        names the node's temp folder (Ray's agents and servers, also once their parent is gone)."""
        table = _process_table()
        children: dict[int, list[int]] = {}
        for pid, (parent, _, _) in table.items():
            children.setdefault(parent, []).append(pid)
        found = {pid for pid, (_, _, command) in table.items() if str(self.temp_dir).encode() in command}
        below = [self.process.pid]
        while below:
            pid = below.pop()
            found.add(pid)
            below.extend(child for child in children.get(pid, ()) if child not in found)
        return {(pid, table[pid][1]) for pid in found if pid in table and pid != os.getpid()}

    def stop(self, timeout: float = NODE_STOP_TIMEOUT_S) -> None:
        """Stop the node, then kill by PID every process of it still alive (Ray puts workers in process groups of
        their own, so the node's group alone misses them; a worker stuck in native code ignores SIGTERM)."""
        members = self.processes()  # taken first: once ``ray start`` is gone its children have other parents
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        members |= self.processes()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        table = _process_table()
        for pid, started in members:
            if pid != self.process.pid and table.get(pid, (0, "", b""))[1] == started:  # not a reused PID
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        self.process.wait()


def _process_table() -> dict[int, tuple[int, str, bytes]]:
    """PID -> (parent PID, start time, command line) of the live processes this user may read (Linux /proc)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if fields[0] not in ("Z", "X"):
                table[int(entry.name)] = (int(fields[1]), fields[19], (entry / "cmdline").read_bytes())
    return table


def start_node(temp_dir: Path, *, head: str | None = None, num_cpus: float | None = None,
               num_gpus: float | None = None, prefix: tuple[str, ...] = (), timeout: float = 90.0) -> RayNode:
    """Start a head (``head=None``) or a node joining ``head``, bound to 127.0.0.1, and wait until it runs.

    ``prefix`` is put before the command (e.g. to run it in another network namespace). A joining node binds
    127.0.0.1 only inside a network that has nothing but loopback: elsewhere Ray swaps in the outward address.
    """
    address = head or f"127.0.0.1:{free_loopback_port()}"
    command = [*prefix, sys.executable, "-c", "from ray.scripts.scripts import main; main()", "start", "--block",
               "--node-ip-address", "127.0.0.1", "--temp-dir", str(temp_dir), "--disable-usage-stats"]
    if head is None:
        command += ["--head", "--port", address.rsplit(":", 1)[1], "--include-dashboard", "false"]
    else:
        command += ["--address", head]
    if num_cpus is not None:
        command += ["--num-cpus", f"{num_cpus:g}"]
    if num_gpus is not None:
        command += ["--num-gpus", f"{num_gpus:g}"]
    # the node serves this job alone: no 30 s drain on SIGTERM for work that has already finished
    env = {**os.environ, **loopback_environment(), "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
    if head is not None:  # Ray refuses to join a second node in single-machine mode; it finds 127.0.0.1 from
        env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "1"  # the head's loopback address (in a loopback-only network)
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    node = RayNode(process, temp_dir, address)
    started = threading.Event()

    def drain() -> None:  # keep the pipe empty for the node's whole life
        assert process.stdout is not None
        for line in process.stdout:
            node.output.append(line.rstrip())
            if "Ray runtime started" in line:
                started.set()
        started.set()

    threading.Thread(target=drain, name="ray-node-output", daemon=True).start()
    try:
        running = started.wait(timeout) and process.poll() is None
    except BaseException:  # stopped (Ctrl-C, SIGTERM) while the node starts: nothing of it may outlive the caller
        node.stop()
        raise
    if not running:
        node.stop()
        raise MissingComponentError("could not start a local Ray node:",
                                    "check that Ray is installed (pip install 'fcn-deploy[ray]') and the temp folder is writable",
                                    details=node.output[-15:])
    return node


CONNECT_HINT = ("run this on a node of the cluster ('ray start --head', then 'ray start --address HEAD' on the "
                "others), with the cluster's RAY_AUTH_MODE and token")


def _connect(ray: ModuleType, address: str) -> None:
    """``ray.init`` quietly on an existing cluster; our error with the cause when it fails."""
    _check_head_answers(ray, address)
    try:
        ray.init(address=address, configure_logging=True, logging_level=logging.WARNING, log_to_driver=False)
    except Exception as exc:
        raise MissingComponentError(
            f"could not connect to the Ray cluster at {address} ({type(exc).__name__}: {exc})", CONNECT_HINT,
        ) from exc


def _check_head_answers(ray: ModuleType, address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Refuse a head that does not accept a TCP connection within ``timeout``: ``ray.init`` retries it for ever."""
    endpoint = _bootstrap_endpoint(ray, address)
    if endpoint is None:  # 'auto' with no cluster known here: ray.init says so at once
        return
    try:
        socket.create_connection(endpoint, timeout=timeout).close()
    except OSError as exc:
        reason = exc.strerror or (f"no answer within {timeout:g} s" if isinstance(exc, TimeoutError) else str(exc))
        raise MissingComponentError(
            f"could not connect to the Ray cluster at {address}: {endpoint[0]}:{endpoint[1]} does not answer "
            f"({reason})",
            f"check the head's address and port (its 'ray start --head' prints them) and that it runs, or use "
            f"--ray {LOCAL}; {CONNECT_HINT}",
        ) from None


def _bootstrap_endpoint(ray: ModuleType, address: str) -> tuple[str, int] | None:
    """The (host, port) ``ray.init`` will dial for ``address``: Ray's own reading (it resolves ``auto`` and may
    swap a loopback host for this node's address), or the address as given where that is not available."""
    if not address.startswith(RAY_CLIENT_SCHEME):
        with contextlib.suppress(Exception):
            resolved = ray._private.services.canonicalize_bootstrap_address(address)
            return None if resolved is None else head_endpoint(resolved)
    return head_endpoint(address)


@contextlib.contextmanager
def ray_session(address: str) -> Iterator[ModuleType]:
    """Ray connected to ``address``, or to a private head started for the job (``local``) and stopped after it."""
    with contextlib.ExitStack() as stack:
        if address == LOCAL:
            temp_dir = short_temp_dir()
            stack.callback(shutil.rmtree, temp_dir, True)
            stack.callback(remove_orphaned_model_copies)  # after the node stopped: its workers are gone
            # every file of Ray's (the driver's included) stays in the job's private temp folder, and so do the
            # caches its workers' libraries keep under XDG_CACHE_HOME (ONNX Runtime writes a device id on import):
            # nothing of the job is written into the user's home
            stack.enter_context(_environment({**loopback_environment(), "RAY_TMPDIR": str(temp_dir),
                                              "XDG_CACHE_HOME": str(temp_dir / "cache")}))
            ray = require_ray()
            _reload_ray_settings(ray)
            resources = local_node_resources()
            node = start_node(temp_dir, num_cpus=resources["CPU"], num_gpus=resources["GPU"])
            stack.callback(node.stop)
            address = node.address
        else:
            ray = require_ray()
        with _stop_handlers_kept():
            _connect(ray, address)
        stack.callback(ray.shutdown)
        # the job has its own bar; a call that failed every try drops its images, and _run_pool accounts for them
        stack.enter_context(_data_settings(ray, enable_progress_bars=False, print_on_execution_start=False,
                                           max_errored_blocks=-1))
        data_logger = logging.getLogger("ray.data")
        stack.callback(data_logger.setLevel, data_logger.level)
        # Ray Data's notices would interleave with the bar, and a given-up call's traceback is the image's record
        data_logger.setLevel(logging.CRITICAL)
        yield ray


@contextlib.contextmanager
def _data_settings(ray: ModuleType, **settings: object) -> Iterator[None]:
    """Ray Data's process-wide settings for the job, put back when it ends: a caller's own Ray work keeps its own."""
    context = ray.data.DataContext.get_current()
    before = {name: getattr(context, name) for name in settings}
    try:
        for name, value in settings.items():
            setattr(context, name, value)
        yield
    finally:
        for name, value in before.items():
            setattr(context, name, value)


@contextlib.contextmanager
def _stop_handlers_kept() -> Iterator[None]:
    """Put back the SIGINT and SIGTERM handlers the block replaced.

    ``ray.init`` installs a handler that ends the driver at once on SIGTERM; infer's handler stops the run and
    writes the summary first. Handlers live on the main thread only; elsewhere nothing is changed.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in handlers.items():
            if handler is not None:
                signal.signal(signum, handler)


def _reload_ray_settings(ray: ModuleType) -> None:
    """Make a Ray imported before the loopback environment was set read it (as Ray itself does on a change)."""
    ray._raylet.Config.initialize("")


def require_ray() -> ModuleType:
    """The ``ray`` module with Ray Data, or MissingComponentError naming the extra to install."""
    ray = require("ray")
    require("ray.data")
    return ray


__all__ = ["LOCAL", "RayConfig", "RayNode", "SegmentWorker", "WorkerSetup", "infer_on_ray", "loopback_environment",
           "model_files", "ray_session", "remove_orphaned_model_copies", "remove_partial_outputs", "short_temp_dir",
           "start_node"]
