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
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from fcn_deploy.contract import sidecar_path
from fcn_deploy.deps import require
from fcn_deploy.errors import FcnDeployError, InputError, MissingComponentError
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
MAX_PATHS_PER_BLOCK = 256  # image paths per Ray Data block (fewer for small jobs, so every worker gets some)
# Ray puts Unix sockets inside its temp folder (<temp>/session_<date>_<pid>/sockets/plasma_store); Linux caps a
# socket path at 107 bytes, so the folder itself may take at most this many
MAX_LOCAL_TEMP_CHARS = 45
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

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        """``{'path': [relative, ...]}`` -> one JSON record per image, with the backend that made it."""
        setup, backend = self.setup, self.segmenter.backend
        in_dir, out_dir = Path(setup.in_dir), Path(setup.out_dir)
        records = [
            process_image(self.segmenter, image_job(in_dir, out_dir, str(relative), setup.config.overlay), setup.config)
            for relative in batch["path"]
        ]
        return {"record": [json.dumps(asdict(record)) for record in records],
                "backend": [backend.name] * len(records), "device": [backend.device] * len(records)}


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
    """Stream ``todo`` through the actor pool, adding each image's first record and the backend to ``progress``."""
    pyarrow = require("pyarrow")
    per_block = max(1, min(MAX_PATHS_PER_BLOCK, len(todo) // (4 * cluster.workers)))
    blocks = [pyarrow.table({"path": list(todo[start:start + per_block])}) for start in range(0, len(todo), per_block)]
    dataset = ray.data.from_arrow(blocks).map_batches(
        SegmentWorker,
        fn_constructor_kwargs={"setup": setup},
        compute=ray.data.ActorPoolStrategy(size=cluster.workers),
        batch_size=cluster.images_per_call,
        batch_format="numpy",
        num_cpus=cluster.cpus_per_worker,
        num_gpus=cluster.gpus_per_worker or None,
    )  # Ray Data's actor pool restarts a lost actor and retries its calls by default (max_restarts=-1)
    seen: set[str] = set()
    try:
        for row in dataset.iter_rows():
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
                         f"point TMPDIR at a folder of at most {MAX_LOCAL_TEMP_CHARS - 12} characters, e.g. /tmp")
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

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the node and every process it started (its process group), by PID."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)  # anything of the node still alive
        self.process.wait()


def start_node(temp_dir: Path, *, head: str | None = None, num_cpus: float | None = None,
               prefix: tuple[str, ...] = (), timeout: float = 90.0) -> RayNode:
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
        command += ["--num-cpus", str(num_cpus)]
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
    if not started.wait(timeout) or process.poll() is not None:
        node.stop()
        raise MissingComponentError("could not start a local Ray node:",
                                    "check that Ray is installed (pip install 'fcn-deploy[ray]') and the temp folder is writable",
                                    details=node.output[-15:])
    return node


def _connect(ray: ModuleType, address: str) -> None:
    """``ray.init`` quietly on an existing cluster; our error with the cause when it fails."""
    try:
        ray.init(address=address, configure_logging=True, logging_level=logging.WARNING, log_to_driver=False)
    except Exception as exc:
        raise MissingComponentError(
            f"could not connect to the Ray cluster at {address} ({type(exc).__name__}: {exc})",
            "run this on a node of the cluster ('ray start --head', then 'ray start --address HEAD' on the others), "
            "with the cluster's RAY_AUTH_MODE and token",
        ) from exc


@contextlib.contextmanager
def ray_session(address: str) -> Iterator[ModuleType]:
    """Ray connected to ``address``, or to a private head started for the job (``local``) and stopped after it."""
    with contextlib.ExitStack() as stack:
        if address == LOCAL:
            temp_dir = short_temp_dir()
            stack.callback(shutil.rmtree, temp_dir, True)
            stack.callback(remove_orphaned_model_copies)  # after the node stopped: its workers are gone
            stack.enter_context(_environment(loopback_environment()))
            ray = require_ray()
            _reload_ray_settings(ray)
            node = start_node(temp_dir)
            stack.callback(node.stop)
            address = node.address
        else:
            ray = require_ray()
        with _stop_handlers_kept():
            _connect(ray, address)
        stack.callback(ray.shutdown)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the job has its own bar
        context.print_on_execution_start = False
        data_logger = logging.getLogger("ray.data")
        stack.callback(data_logger.setLevel, data_logger.level)
        data_logger.setLevel(logging.ERROR)  # Ray Data's per-run notices would interleave with the bar
        yield ray


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
