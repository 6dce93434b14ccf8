"""How many threads a reply runs on (cores.py): every core that other processes left idle, else the configured few.

Measured on the real machine with busy child processes: what this process burns itself must not count as the
others' load, what other processes burn must.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rsft_plugin.generative.cores import CoreWatch, CpuTimes, others_busy, read_cpu_times, reply_threads

BURN = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass\n"


def test_the_others_load_is_the_machines_busy_time_less_this_processs_own():
    earlier = CpuTimes(at=10.0, busy=100.0, own=5.0)
    assert others_busy(earlier, CpuTimes(at=12.0, busy=103.0, own=6.0)) == pytest.approx(1.0)  # 3 s busy, 1 ours
    assert others_busy(earlier, CpuTimes(at=12.0, busy=101.0, own=6.0)) == 0.0  # ours alone (ticks are coarse)
    assert others_busy(earlier, CpuTimes(at=10.1, busy=101.0, own=5.0)) is None  # too short a look to say


@pytest.mark.parametrize("busy, expected", [(0.0, 2), (0.4, 2), (0.6, 1), (1.0, 1), (2.0, 1)])
def test_a_reply_takes_the_cores_left_idle_and_never_fewer_than_configured(busy, expected):
    assert reply_threads(1, 2, busy) == expected
    assert reply_threads(2, 2, 2.0) == 2  # the configured few, whatever the load
    assert reply_threads(1, 8, 5.0) == 3


def test_the_watch_keeps_its_answer_when_looks_come_too_close_together():
    looks = iter([CpuTimes(0.0, 0.0, 0.0), CpuTimes(1.0, 1.0, 0.0), CpuTimes(1.05, 1.05, 0.0),
                  CpuTimes(2.0, 1.05, 0.0)])
    watch = CoreWatch(read=lambda: next(looks), cores=2)
    assert watch.threads(1) == 1  # the other core was busy for the whole second
    assert watch.threads(1) == 1  # 50 ms later: no new answer
    assert watch.threads(1) == 2  # the second since the last long look was idle


def test_proc_stat_is_read_as_busy_seconds_without_idle_and_iowait(tmp_path: Path):
    stat = tmp_path / "stat"
    stat.write_text("cpu  300 20 80 5000 100 10 5 5 0 0\ncpu0 150 10 40 2500 50 5 2 3 0 0\n")
    look = read_cpu_times(stat)
    assert look is not None and look.busy == pytest.approx((300 + 20 + 80 + 10 + 5 + 5) / os.sysconf("SC_CLK_TCK"))
    stat.write_text("cpu  300 20 80 5000\n")  # too few fields to tell idle from waiting: unreadable
    assert read_cpu_times(stat) is None


def test_an_unreadable_machine_runs_replies_on_the_configured_few(tmp_path: Path):
    assert read_cpu_times(tmp_path / "missing") is None
    watch = CoreWatch(read=lambda: None, cores=4)
    assert watch.threads(1) == 1 and watch.threads(3) == 3


def _spin(seconds: float, in_child: bool) -> tuple[float, float]:
    """Spin for `seconds` here or in a child process; the others' busy cores meanwhile, as `others_busy` saw them,
    and the share of a core this process got (from getrusage, not from what is under test)."""
    earlier, earlier_own = read_cpu_times(), _own_cpu_seconds()
    if in_child:
        subprocess.run([sys.executable, "-c", BURN.format(seconds=seconds)], check=True)
    else:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            pass
    later, later_own = read_cpu_times(), _own_cpu_seconds()
    busy = others_busy(earlier, later)
    assert busy is not None
    return busy, (later_own - earlier_own) / (later.at - earlier.at)


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def test_on_the_real_machine_only_other_processes_burning_cpu_count_as_busy():
    # The same spin in a child and in this process: the child's counts as the others' load, this process's does
    # not, so the first look reads more busy cores than the second by about the share of a core the spin got here.
    # On a quiet machine that is a whole core; on one that other work keeps busy the spin gets less, and the other
    # work fills the cores around it. Counting the child as this process's own, or this process's spin as the
    # others', leaves no gap. The others' load can shift between two looks, so three tries are allowed.
    tries = []
    for _ in range(3):
        child_busy, _ = _spin(0.6, in_child=True)
        own_busy, own_share = _spin(0.6, in_child=False)
        gap = child_busy - own_busy
        tries.append((round(gap, 2), round(own_share, 2)))
        if gap > 0.5 * max(own_share, 0.5):
            return
    pytest.fail(f"a child's spin did not read as more of the others' load than this process's own: "
                f"(gap, this process's share of a core) per try: {tries}")
