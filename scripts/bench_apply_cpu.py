#!/usr/bin/env python3
"""Where the CPU of `apply` goes when it opens 20 tunnels at once, by process name, from a system-wide perf
profile: declastruct's apply process, its tunnel supervisors, the session program (fake-aws-cli: the CLI and
its plugin) and PostgreSQL (a backend for every health probe).

    python3 scripts/bench_apply_cpu.py --declastruct target/release/declastruct \
        --fake-aws-cli target/release/fake-aws-cli

Needs `perf` (Debian's linux-perf) and a kernel that lets it sample system-wide. The same world as
scripts/bench_e2e.py: its own moto, PostgreSQL and session stand-in, bastions running, sessions ready at once.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_e2e as e2e  # noqa: E402

FREQUENCY = 2000
TUNNELS = 20


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--declastruct", required=True)
    parser.add_argument("--fake-aws-cli", required=True)
    parser.add_argument("--runs", type=int, default=3)
    arguments = parser.parse_args()
    declastruct = os.path.abspath(arguments.declastruct)
    fake = os.path.abspath(arguments.fake_aws_cli)

    work = tempfile.mkdtemp(prefix="declastruct-cpu-")
    os.chmod(work, 0o711)
    moto = e2e.Moto()
    postgres = e2e.Postgres(os.path.join(work, "pg"))
    runs = []
    try:
        env, _, _ = e2e.seed_world(moto, postgres, work, fake)
        path = os.path.join(work, "declastruct.yml")
        apply = [declastruct, "apply", "--auto-approve", "--parallelism", str(TUNNELS)]
        for run in range(arguments.runs):
            data = os.path.join(work, f"perf-{run}.data")
            open(path, "w").write(e2e.manifest(TUNNELS, 10))
            perf = subprocess.Popen(["perf", "record", "-a", "-F", str(FREQUENCY), "-o", data],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
            subprocess.run(apply, env=env, cwd=work, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=True)
            time.sleep(0.1)
            perf.send_signal(2)
            perf.wait()
            report = subprocess.run(["perf", "report", "-i", data, "-n", "--sort", "comm", "--stdio"],
                                    capture_output=True, text=True).stdout
            samples = {}
            for line in report.splitlines():
                match = re.match(r"\s+[\d.]+%\s+(\d+)\s+(.+?)\s*$", line)
                if match:
                    samples[match.group(2)] = samples.get(match.group(2), 0) + int(match.group(1))
            runs.append(samples)
            open(path, "w").write(e2e.manifest(TUNNELS, 10, status="CLOSED"))
            subprocess.run(apply, env=env, cwd=work, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=True)
    finally:
        postgres.stop()
        moto.stop()
        shutil.rmtree(work, ignore_errors=True)

    # the apply process's threads are named tokio-rt-worker; its main thread and the supervisors, declastruct
    groups = {
        "declastruct (apply's threads and the supervisors)": ["tokio-rt-worker", "declastruct"],
        "session program (fake-aws-cli and its plugin)": ["fake-aws-cli"],
        "PostgreSQL (a backend per health probe)": ["postgres"],
        "moto (plan's two requests)": ["moto_server"],
    }
    print(f"| CPU while `apply` opens {TUNNELS} tunnels (median of {arguments.runs} runs) | ms in all | ms per tunnel |")
    print("|---|---|---|")
    for label, names in groups.items():
        per_run = [sum(samples.get(name, 0) for name in names) for samples in runs]
        milliseconds = e2e.median(per_run) * 1000 / FREQUENCY
        print(f"| {label} | {milliseconds:.0f} | {milliseconds / TUNNELS:.1f} |")
    busy = [sum(count for name, count in samples.items() if name != "swapper") for samples in runs]
    milliseconds = e2e.median(busy) * 1000 / FREQUENCY
    print(f"| every process but the idle task, during the whole profile | {milliseconds:.0f} | "
          f"{milliseconds / TUNNELS:.1f} |")


if __name__ == "__main__":
    main()
