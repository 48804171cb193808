"""Where a worker's time goes: py-spy sampling of a running worker, CPU time per process
from ``/proc``, and a summary of the samples by stage of the stream (pure, so tested on
hand-written stacks)."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

# A sample's stage is the first of these whose marker appears in the part of its stack
# below the event loop's ``Handle._run`` (the callback the loop is running: every stack of
# the main thread has Faust's worker frames above it). Scoring runs there too, or, for
# slow batches, in the executor thread, whose stacks have no such frame.
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("model scoring (on the event loop or a thread)", ("score_clean",)),
    ("counting in Redis (request + reply)", ("Counters.count",)),
    ("escalation (window reads, rule)", ("Escalator.",)),
    ("decode, preprocess, scopes, terms", ("Pipeline.process", "Pipeline._accept", "to_raw_message")),
    ("Faust consumer (fetch, per-message delivery, acks)", ("faust/", "aiokafka/", "mode/services.py", "mode/utils/")),
)
_CALLBACK = "Handle._run ("
IDLE = "idle (event loop waiting for I/O)"
OTHER = "other (event loop, threads, interpreter)"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_sampling(pid: int, raw_out: Path, rate_hz: int = 200) -> subprocess.Popen | None:
    """py-spy recording ``pid`` in collapsed-stack form until ``stop_sampling``; None when
    py-spy is not installed."""
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if py_spy is None:
        return None
    raw_out.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [py_spy, "record", "--pid", str(pid), "--rate", str(rate_hz), "--format", "raw", "--output", str(raw_out), "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def stop_sampling(sampler: subprocess.Popen) -> None:
    # py-spy writes what it has on SIGINT, as after Ctrl-C.
    if sampler.poll() is None:
        sampler.send_signal(signal.SIGINT)
    try:
        sampler.wait(30)
    except subprocess.TimeoutExpired:
        sampler.kill()
        sampler.wait()


def _frame_name(frame: str) -> str:
    """``func (/long/path/module.py:12)`` -> ``func (module.py)``."""
    name, _, where = frame.partition(" (")
    return f"{name} ({Path(where.rstrip(')').rsplit(':', 1)[0]).name})" if where else name


def summarise(collapsed: str, top: int = 12) -> tuple[list[dict], list[dict]]:
    """Shares of the samples by stage, and the functions with the most samples of their
    own (outside idle waiting), from py-spy's raw collapsed stacks (``a;b;c 12`` lines)."""
    stages: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        innermost = frames[-1]
        if innermost.startswith(("select (", "EpollSelector.select", "_worker (")) and "score_clean" not in stack:
            stages[IDLE] += n
            continue
        running = stack[stack.rfind(_CALLBACK):] if _CALLBACK in stack else stack
        stages[next((stage for stage, markers in STAGES if any(m in running for m in markers)), OTHER)] += n
        own[_frame_name(innermost)] += n
    if total == 0:
        return [], []
    order = [stage for stage, _ in STAGES] + [OTHER, IDLE]
    by_stage = [{"stage": s, "share_of_samples": stages[s] / total} for s in order if stages[s]]
    functions = [{"function": f, "share_of_samples": n / total} for f, n in own.most_common(top)]
    return by_stage, functions
