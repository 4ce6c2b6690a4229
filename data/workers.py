"""What every dataloader worker process of the project does first."""
from __future__ import annotations

import signal


def ignore_termination(worker_id: int) -> None:
    """A scheduler's cancel (or `kill -- -PGID`) sends SIGTERM to the whole process group, workers included. A
    worker dying of it made the trainer fail on that death in mid-step, before its preemption checkpoint; ignoring
    it, workers are stopped by the trainer once it has saved (and exit anyway when it dies)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
