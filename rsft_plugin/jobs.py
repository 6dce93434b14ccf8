"""One job mechanism for long work started from the web or the CLI: rounds and bank publications.

A job is a row of the log's `jobs` table: queued -> running -> finished | failed, with the pid of the process
doing the work. Whoever starts work records a job (`start` refuses while another job is active, or `adopt` a job
the web queued for it); `sweep` marks jobs whose process died as failed — with their round or publication — and
is the only place that does; `busy` is the one answer to "is something running?". `spawn` starts the process that
does a job (the web's POST /api/rounds and the console's publication both use it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from .config import Config
from .log import Job, Log

ROUND, PUBLISH_BANK = "round", "publish_bank"


def process_alive(pid: int | None) -> bool:
    """Whether a process id belongs to a running process (a job's owner, say)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep(log: Log) -> list[Job]:
    """Mark jobs whose process is gone (killed or crashed) as failed, with their round or publication."""
    return log.fail_abandoned(process_alive)


def busy(log: Log) -> Job | None:
    """The active job (newest first) whose process is alive, or None: is something running?"""
    return next((job for job in log.jobs(active_only=True) if process_alive(job.pid)), None)


def start(log: Log, kind: str, *, exclusive: bool = True, queued: bool = False, message: str = "") -> Job:
    """Record a job owned by this process.

    Raises:
        JobBusy: (exclusive) another job is active; `.job` says which.
    """
    return log.start_job(kind, os.getpid(), process_alive, exclusive=exclusive,
                         status="queued" if queued else "running", message=message)


def adopt(log: Log, job_id: int) -> Job:
    """This process takes over a job someone queued for it (the web, say): running, with this pid."""
    log.update_job(job_id, status="running", pid=os.getpid())
    job = log.job(job_id)
    assert job is not None
    return job


def finish(log: Log, job_id: int, failed: bool = False, message: str = "") -> None:
    log.update_job(job_id, status="failed" if failed else "finished", message=message)


def spawn(config: Config, log: Log, job: Job, module: str, args: list[str], log_name: str) -> int:
    """Start `python -m MODULE [--config FILE] ARGS...` detached for `job`, output to var/run/logs/LOG_NAME.

    The job becomes owned by the child's pid (a dead child is then swept as failed). Returns the pid.
    """
    command = [sys.executable, "-m", module]
    if config.source:
        command += ["--config", str(config.source)]
    log_dir = Path(config.paths.run_dir) / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    try:
        with (log_dir / log_name).open("ab") as output:
            process = subprocess.Popen([*command, *args], stdout=output, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
    except OSError as exc:
        finish(log, job.id, failed=True, message=f"could not start: {exc}")
        raise
    log.update_job(job.id, pid=process.pid)
    # Reap the child when it exits: an unreaped (zombie) child still answers kill(pid, 0), so a job killed with -9
    # would look alive to `busy` and `sweep` for as long as this process runs.
    threading.Thread(target=process.wait, name=f"rsft-reap-{process.pid}", daemon=True).start()
    return process.pid
