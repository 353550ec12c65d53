"""Which accelerator and how many CPU threads each worker gets.

Optuna workers are processes: each is given one GPU round-robin through `CUDA_VISIBLE_DEVICES`
before its framework starts (the only switch TensorFlow, JAX and PyTorch all honour), with
memory growth on so several workers can share a device. Ray assigns GPUs itself from
`--gpus-per-trial`. CPU threads are capped per worker so N workers on N cores do not fight."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from search.errors import SettingsError

# Let frameworks take GPU memory as needed rather than all of it up front, so trials share.
SHARING_ENV = {"TF_FORCE_GPU_ALLOW_GROWTH": "true", "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}


def resolve_gpus(value) -> list[str]:
    """`auto` (the GPUs this machine has, none on a CPU machine), `none`, or ids `0,1,...`."""
    if value is None or value == "auto":
        return detect_gpus()
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    text = str(value).strip()
    if text in ("", "none"):
        return []
    ids = [part.strip() for part in text.split(",")]
    if not all(part.isdigit() for part in ids) or len(set(ids)) != len(ids):
        raise SettingsError(f"gpus: expected auto, none or distinct device ids like 0,1; got {value!r}")
    available = detect_gpus()
    missing = [i for i in ids if i not in available]
    if missing:  # a worker on a device that is not there would silently run on the CPU
        raise SettingsError(f"gpus: no GPU {','.join(missing)} on this machine "
                            f"(it has: {','.join(available) or 'none'})")
    return ids


def detect_gpus() -> list[str]:
    """GPU ids visible to this process, without importing a framework (that takes seconds)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [v for v in (p.strip() for p in visible.split(",")) if v and v != "-1"]
    proc = Path("/proc/driver/nvidia/gpus")
    if proc.is_dir():
        return [str(i) for i in range(len(list(proc.iterdir())))]
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(l for l in listing.splitlines() if l.startswith("GPU "))]


def for_worker(gpus, index: int) -> dict:
    """Environment for worker `index`: its GPU, round-robin; nothing when there are none."""
    if not gpus:
        return {}
    return {"CUDA_VISIBLE_DEVICES": str(gpus[index % len(gpus)]), **SHARING_ENV}


def usable_cores() -> int:
    """The CPUs this process may use: the machine's, fewer under a container's CPU quota or a
    CPU affinity mask (loky's count, which os.cpu_count() is not; joblib's own says 1 under
    JOBLIB_MULTIPROCESSING=0). Ray started here is given this number too."""
    from joblib.externals.loky import cpu_count

    return max(1, int(cpu_count()))


def cores_per_worker(workers: int) -> int:
    return max(1, usable_cores() // max(1, int(workers)))


_thread_cap = None  # what `limit_threads` was given here: the trial processes started from here get it too


def thread_cap():
    """The cap this process's threads were given (`limit_threads`), or None."""
    return _thread_cap


def limit_threads(cores: int, here: bool = True):
    """Caps TensorFlow's thread pools at `cores` (call before the first TensorFlow op; later
    calls are refused by TensorFlow and ignored here). Other backends follow OMP settings.
    A trial process this process starts applies the same cap (search/trial_process.py);
    `here=False` only records it for them (this process runs no Keras: no import)."""
    global _thread_cap
    _thread_cap = int(cores)
    if not here:
        return
    import keras

    if keras.backend.backend() != "tensorflow":
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(cores)
        tf.config.threading.set_inter_op_parallelism_threads(min(2, cores))
    except RuntimeError:  # TensorFlow already started in this process
        pass


def intra_op_threads():
    """TensorFlow's intra-op thread cap in this process (0: TensorFlow's default, every core);
    None under other Keras backends. Each trial records it."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    return int(tf.config.threading.get_intra_op_parallelism_threads())
