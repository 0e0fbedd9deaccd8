"""CPU time of this process and of a training loader's worker processes, for the loader benchmarks
(bench_generators.py --costs, gpu_check.py): per sample, the training process's cost and the workers' apart."""
import os
import resource


def own_cpu_seconds():
    """CPU time of this process, every thread of it (Keras's loader threads, the ProcessLoader's), no child."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def process_cpu_seconds(pid):
    """CPU time (user + system) of a running process, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as file:
        fields = file.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worker_cpu_seconds(sequence):
    """CPU time of a TrainSequence's worker processes (they have not ended: RUSAGE_CHILDREN would not count them)."""
    loader = sequence._loader.loader
    return sum(process_cpu_seconds(p.pid) for p in loader.processes) if loader else 0.0
