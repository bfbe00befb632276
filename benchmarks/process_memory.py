"""Peak resident memory of a child process and all its descendants, sampled from ``/proc`` (Linux only)."""

import os
import resource
import subprocess
import time

SAMPLE_INTERVAL_S = 0.05


def _children_map():
    """Return ``{parent pid: [child pids]}`` for every process visible in ``/proc``."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    return children


def _descendants(pid):
    children = _children_map()
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(children.get(current, []))
    return found


def _memory_kib(pid):
    """Return ``(VmRSS, VmHWM, RssAnon)`` of a process in KiB, or None when it has exited."""
    values = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith(("VmRSS:", "VmHWM:", "RssAnon:")):
                    name, amount = line.split(":", 1)
                    values[name] = int(amount.split()[0])
    except OSError:
        return None
    if "VmRSS" not in values:
        return None
    return values["VmRSS"], values.get("VmHWM", values["VmRSS"]), values.get("RssAnon", values["VmRSS"])


def run_with_memory_sampling(command, cwd=None):
    """Run ``command`` and sample the memory of its process tree until it exits.

    Returns
    -------
    (CompletedProcess, dict)
        The dict contains these figures in MiB:

        - ``main_peak_mib``: the child's own VmHWM;
        - ``worker_peaks_mib``: each descendant's VmHWM, largest first;
        - ``sum_of_peaks_mib``: main plus descendants, an upper bound of the
          simultaneous total;
        - ``max_sampled_total_mib``: the largest sum of VmRSS in one sample;
        - ``sum_of_anonymous_peaks_mib``: the sampled RssAnon peaks, which
          leave out the page cache of memory-mapped files;
        - ``ru_maxrss_children_mib``: the kernel's largest single descendant.

        ``samples`` is the number of samples taken.

    NOTE: a process that lives shorter than one sampling interval can be
    missed; the indexer's workers live for the whole run.
    """
    with subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as child:
        peaks, anonymous_peaks, max_total, samples = {}, {}, 0, 0
        while child.poll() is None:
            total = 0
            for pid in _descendants(child.pid):
                memory = _memory_kib(pid)
                if memory is None:
                    continue
                rss, high_water, anonymous = memory
                total += rss
                peaks[pid] = max(peaks.get(pid, 0), high_water)
                anonymous_peaks[pid] = max(anonymous_peaks.get(pid, 0), anonymous)
            max_total = max(max_total, total)
            samples += 1
            time.sleep(SAMPLE_INTERVAL_S)
        stdout, stderr = child.communicate()

    completed = subprocess.CompletedProcess(command, child.returncode, stdout, stderr)
    main_peak = peaks.pop(child.pid, 0)
    workers = sorted(peaks.values(), reverse=True)
    memory = {
        "main_peak_mib": main_peak / 1024,
        "worker_peaks_mib": [peak / 1024 for peak in workers],
        "sum_of_peaks_mib": (main_peak + sum(workers)) / 1024,
        "max_sampled_total_mib": max_total / 1024,
        "sum_of_anonymous_peaks_mib": sum(anonymous_peaks.values()) / 1024,
        "ru_maxrss_children_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "samples": samples,
    }
    return completed, memory
