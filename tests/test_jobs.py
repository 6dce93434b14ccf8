"""The one job mechanism (rsft_plugin.jobs) over a real log: start, busy, adopt, finish, spawn and the sweep."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time

import pytest

from rsft_plugin import jobs
from rsft_plugin.errors import JobBusy
from rsft_plugin.parts import build_parts


@pytest.fixture
def parts(config):
    built = build_parts(config)
    yield built
    built.close()


def test_one_answer_to_is_something_running(parts):
    assert jobs.busy(parts.log) is None
    job = jobs.start(parts.log, jobs.PUBLISH_BANK)
    assert jobs.busy(parts.log).id == job.id and job.pid == os.getpid()
    with pytest.raises(JobBusy):
        jobs.start(parts.log, jobs.ROUND, queued=True)
    jobs.finish(parts.log, job.id)
    assert jobs.busy(parts.log) is None and parts.log.job(job.id).status == "finished"


def test_a_spawned_job_whose_process_died_is_swept_as_failed(parts):
    job = jobs.start(parts.log, jobs.ROUND, queued=True)
    pid = jobs.spawn(parts.config, parts.log, job, "json.tool", ["--help"], "jobs-test.log")
    assert parts.log.job(job.id).pid == pid != os.getpid()
    deadline = time.monotonic() + 30
    while jobs.process_alive(pid) and time.monotonic() < deadline:  # spawn reaps its child: no zombie lingers
        time.sleep(0.05)
    assert [j.id for j in jobs.sweep(parts.log)] == [job.id]
    assert parts.log.job(job.id).status == "failed" and jobs.busy(parts.log) is None
    assert (parts.config.paths.run_dir / "logs" / "jobs-test.log").exists()


def test_a_queued_job_is_adopted_by_the_process_that_runs_it(parts):
    job = jobs.start(parts.log, jobs.ROUND, queued=True)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        parts.log.update_job(job.id, pid=child.pid)
        adopted = jobs.adopt(parts.log, job.id)  # in the child this pid would be its own
        assert adopted.status == "running" and adopted.pid == os.getpid() and adopted.started_at
    finally:
        child.kill()
        child.wait()


def test_a_spawned_job_killed_with_sigkill_is_no_longer_running_and_is_swept_as_failed(parts, tmp_path):
    # The spawning process (the web server) must reap its child: a zombie still answers kill(pid, 0), and a round
    # killed with -9 would then block every new one ("a round is already running") until the web server restarts.
    config = dataclasses.replace(parts.config, source=None)  # no --config: the child here is not rsft
    job = jobs.start(parts.log, jobs.ROUND, queued=True)
    pid = jobs.spawn(config, parts.log, job, "timeit", ["-r", "1", "-n", "1", "-s", "import time", "time.sleep(60)"],
                     "sleeper.log")
    try:
        assert jobs.busy(parts.log).id == job.id
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while jobs.busy(parts.log) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert jobs.busy(parts.log) is None
        assert [swept.id for swept in jobs.sweep(parts.log)] == [job.id]
        assert parts.log.job(job.id).status == "failed"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
