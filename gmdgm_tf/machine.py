"""Facts about the machine a run or benchmark ran on: peak memory, CPU, versions, and
the commit of the code."""

import os
import platform
import resource
import subprocess
import sys

# The checkout this package lies in (when it is one: not for an installed wheel).
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


def code_commit():
    """The git commit of the checkout this package runs from, or None (not a checkout, or
    no git). Uncommitted edits are not seen."""
    try:
        out = subprocess.run(["git", "-C", REPO, "rev-parse", "--show-toplevel", "HEAD"],
                             capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.split()
    # a checkout of its own, not a repository the install happens to lie in
    if out.returncode or len(lines) != 2 or os.path.realpath(lines[0]) != os.path.realpath(REPO):
        return None
    return lines[1]


def is_remote(path) -> bool:
    """A TF filesystem URL (gs://bucket/..., ram://...), read and written through
    tf.io.gfile only; else a local path."""
    return "://" in path


def portable_path(path):
    """path relative to the checkout's root (to the current directory when the package is
    installed, not checked out): what a record may keep, never an absolute path of this
    machine. URLs stay as given."""
    if is_remote(path):
        return path
    base = REPO if os.path.exists(os.path.join(REPO, ".git")) else os.getcwd()
    return os.path.relpath(os.path.abspath(path), base)
