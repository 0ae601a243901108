"""Facts about the machine a run or benchmark ran on: peak memory, CPU, versions."""

import os
import platform
import resource
import sys


def peak_rss_mib():
    """Peak resident memory of this process so far, in MiB.

    VmHWM where /proc exists: getrusage's ru_maxrss of a freshly started process also
    counts the parent it was forked from (Linux saves the pre-exec image's peak)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            return round(int(f.read().split("VmHWM:")[1].split()[0]) / 1024)
    except (OSError, IndexError, ValueError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return round(peak / (2 ** 20 if sys.platform == "darwin" else 2 ** 10))


def cpu_name():
    """The CPU's model name (/proc/cpuinfo), else what platform knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            names = [line.split(":", 1)[1].strip() for line in f
                     if line.startswith("model name")]
        if names:
            return names[0]
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe():
    """-> {"platform", "cpu", "cpu_count", "python"} (no TensorFlow import)."""
    return {"platform": platform.platform(), "cpu": cpu_name(), "cpu_count": os.cpu_count(),
            "python": platform.python_version()}
