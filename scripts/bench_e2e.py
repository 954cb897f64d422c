#!/usr/bin/env python3
"""End-to-end benchmarks of declastruct against moto, a local PostgreSQL and the session stand-in.

Everything runs on loopback, started and stopped by this script. Each figure is the median of several runs,
and every ratio compares figures measured in this one run (the machine is shared and noisy).
Run it through scripts/bench, which builds the release binaries first.
"""
import argparse
import concurrent.futures
import base64
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

import boto3

REGION = "us-east-1"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port, limit=30):
    deadline = time.time() + limit
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing answered on port {port}")


def run_with_cpu(command, env, cwd):
    """runs a command and returns (seconds, peak RSS MB, CPU seconds) of that process alone. GNU time forks a
    small process to exec it, so the peak is not inflated by this Python process's pages (wait4 from here would
    count them); the CPU time is the user and system time of GNU time's process and the command it waited for"""
    report = os.path.join(cwd, "time.out")
    started = time.perf_counter()
    process = subprocess.Popen(["/usr/bin/time", "-f", "%M", "-o", report, *command], env=env, cwd=cwd,
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode not in (0, 2):
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode})")
    peak_kb = int(open(report).read().strip().splitlines()[-1])
    return seconds, peak_kb / 1024, usage.ru_utime + usage.ru_stime


def run_measured(command, env, cwd):
    """(seconds, peak RSS MB) of one run of a command, see run_with_cpu"""
    seconds, peak, _ = run_with_cpu(command, env, cwd)
    return seconds, peak


def cpu_busy_seconds():
    """CPU time spent by the whole machine (all cores), from /proc/stat"""
    fields = [int(value) for value in open("/proc/stat").readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def median(values):
    return statistics.median(values)


class Moto:
    def __init__(self):
        self.port = free_port()
        self.folder = tempfile.mkdtemp(prefix="declastruct-moto-")
        self.process = subprocess.Popen(["moto_server", "-H", "127.0.0.1", "-p", str(self.port)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.folder,
                                        env={**os.environ, "MOTO_RECORDER_FILEPATH": os.path.join(self.folder, "recording")})
        wait_port(self.port)
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def client(self, service):
        return boto3.client(service, endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id="bench", aws_secret_access_key="bench")

    def api(self, method, path):
        request = urllib.request.Request(self.endpoint + path, method=method, data=b"" if method == "POST" else None)
        return urllib.request.urlopen(request).read().decode()

    def raw(self, service, body):
        """one query-protocol request, as the SDK sends it, without an SDK's own cost (moto checks no signature)"""
        request = urllib.request.Request(self.endpoint + "/", method="POST", data=urllib.parse.urlencode(body).encode(),
                                         headers={"Content-Type": "application/x-www-form-urlencoded",
                                                  "Authorization": "AWS4-HMAC-SHA256 Credential=bench/20261127/"
                                                  f"{REGION}/{service}/aws4_request, SignedHeaders=host, Signature=0"})
        return urllib.request.urlopen(request).read()

    def answer_seconds(self, exids, names):
        """wall time for moto to answer plan's two requests (DescribeInstances, DescribeDBClusters), sent
        concurrently as plan sends them"""
        ec2 = {"Action": "DescribeInstances", "Version": "2016-11-15", "Filter.1.Name": "tag:exid",
               "Filter.2.Name": "instance-state-name"}
        ec2.update({f"Filter.1.Value.{i + 1}": exid for i, exid in enumerate(exids)})
        ec2.update({f"Filter.2.Value.{i + 1}": state for i, state in enumerate(["pending", "running", "stopping", "stopped"])})
        rds = {"Action": "DescribeDBClusters", "Version": "2014-10-31", "Filters.Filter.1.Name": "db-cluster-id"}
        rds.update({f"Filters.Filter.1.Values.Value.{i + 1}": name for i, name in enumerate(names)})
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            answers = [pool.submit(self.raw, "ec2", ec2), pool.submit(self.raw, "rds", rds)]
            sizes = [len(answer.result()) for answer in answers]
        return time.perf_counter() - started, sizes

    def start_counting(self):
        self.api("POST", "/moto-api/recorder/reset-recording")
        self.api("POST", "/moto-api/recorder/start-recording")

    def counted(self):
        lines = [line for line in self.api("GET", "/moto-api/recorder/download-recording").splitlines() if line.strip()]
        self.api("POST", "/moto-api/recorder/stop-recording")
        actions = []
        for line in lines:
            record = json.loads(line)
            body = record.get("body") or ""
            if record.get("body_encoded"):
                body = base64.b64decode(body).decode(errors="replace")
            actions.append(next((part[7:] for part in body.split("&") if part.startswith("Action=")), "?"))
        return actions

    def stop(self):
        self.process.kill()
        self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


class Postgres:
    def __init__(self, folder):
        self.bin = sorted(
            (os.path.join("/usr/lib/postgresql", version, "bin") for version in os.listdir("/usr/lib/postgresql")),
            key=lambda path: int(path.split("/")[4]),
        )[-1]
        self.folder = folder
        self.port = free_port()
        os.makedirs(folder, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(folder, "postgres")
        self.tool("initdb", "-D", f"{folder}/data", "-A", "trust", "-U", "postgres", "--no-sync")
        self.tool("pg_ctl", "-D", f"{folder}/data", "-l", f"{folder}/log", "-w", "-o",
                  f"-p {self.port} -c listen_addresses=127.0.0.1 -k {folder} -c max_connections=300", "start")

    def tool(self, name, *args):
        command = [os.path.join(self.bin, name), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self):
        self.tool("pg_ctl", "-D", f"{self.folder}/data", "-m", "immediate", "-w", "stop")


def manifest(tunnels, groups, status="OPEN", first_port=30000):
    lines = ["resources:"]
    for group in range(groups):
        lines += ["  - kind: DeclaredAwsEc2Instance", f"    exid: bastion-{group}", "    status: running",
                  "  - kind: DeclaredAwsRdsCluster", f"    name: cluster-{group}"]
    for tunnel in range(tunnels):
        lines += ["  - kind: DeclaredAwsVpcTunnel", "    via:", "      mechanism: aws.ssm",
                  f"      bastion: {{ exid: bastion-{tunnel % groups} }}", "    into:",
                  f"      cluster: {{ name: cluster-{(tunnel // groups) % groups} }}", "    from:",
                  "      host: localhost", f"      port: {first_port + tunnel}", f"    status: {status}"]
    return "\n".join(lines) + "\n"


def session_ready_seconds(fake, env, target, writer, local_port, folder):
    """the session program's own time from start to `Waiting for connections...`"""
    log_path = os.path.join(folder, "session.log")
    with open(log_path, "w") as log:
        started = time.perf_counter()
        process = subprocess.Popen(
            [fake, "ssm", "start-session", "--target", target, "--document-name",
             "AWS-StartPortForwardingSessionToRemoteHost", "--parameters",
             json.dumps({"host": [writer], "portNumber": ["5432"], "localPortNumber": [str(local_port)]}),
             "--region", REGION],
            env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        while "Waiting for connections..." not in open(log_path).read():
            time.sleep(0.002)
        seconds = time.perf_counter() - started
    os.killpg(process.pid, 9)
    process.wait()
    return seconds


def context_switches(pid):
    """how often the process gave up the CPU (each sleep or wait ends in one)"""
    total = 0
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
            total += int(line.split()[1])
    return total


def rss_mb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def seed_world(moto, postgres, work, fake):
    """10 running bastions and 10 clusters in moto, and the environment that points declastruct at them, at the
    session stand-in and, through it, at the local PostgreSQL; returns (env, writer endpoints, instance ids)"""
    ec2, rds = moto.client("ec2"), moto.client("rds")
    writers = []
    instance_ids = []
    for group in range(10):
        instance = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": "exid", "Value": f"bastion-{group}"}]}])
        instance_ids.append(instance["Instances"][0]["InstanceId"])
        cluster = rds.create_db_cluster(DBClusterIdentifier=f"cluster-{group}", Engine="aurora-postgresql",
                                        MasterUsername="bench", MasterUserPassword="bench-password")
        writers.append(cluster["DBCluster"]["Endpoint"])
    env = {
        "PATH": os.environ["PATH"], "HOME": work, "DECLASTRUCT_HOME": os.path.join(work, "home"),
        "AWS_ENDPOINT_URL": moto.endpoint, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_REGION": REGION, "AWS_EC2_METADATA_DISABLED": "true", "DECLASTRUCT_AWS_CLI": fake,
        "DECLASTRUCT_FAKE_SSM_HOSTS": ",".join(f"{writer}:5432=127.0.0.1:{postgres.port}" for writer in writers),
        # the session program is ready at once: it skips its own lookup in moto
        "DECLASTRUCT_FAKE_SSM_SKIP_LOOKUP": "1",
    }
    return env, writers, instance_ids


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--declastruct", required=True)
    parser.add_argument("--fake-aws-cli", required=True)
    parser.add_argument("--runs", type=int, default=11)
    arguments = parser.parse_args()
    declastruct = os.path.abspath(arguments.declastruct)
    fake = os.path.abspath(arguments.fake_aws_cli)
    runs = arguments.runs

    work = tempfile.mkdtemp(prefix="declastruct-bench-")
    os.chmod(work, 0o711)
    moto = Moto()
    postgres = Postgres(os.path.join(work, "pg"))
    results = {}
    try:
        env, writers, instance_ids = seed_world(moto, postgres, work, fake)
        path = os.path.join(work, "declastruct.yml")

        # 1, 2: plan wall time and AWS requests at 1, 10, 50, 100 tunnels
        for tunnels in (1, 10, 50, 100):
            groups = min(10, tunnels)
            open(path, "w").write(manifest(tunnels, groups))
            moto.start_counting()
            run_measured([declastruct, "plan", "--json"], env, work)
            requests = moto.counted()
            samples = [run_with_cpu([declastruct, "plan", "--json"], env, work) for _ in range(runs)]
            # moto's own time for the same requests, sent concurrently as plan sends them
            exids = [f"bastion-{group}" for group in range(groups)]
            names = [f"cluster-{group}" for group in range(groups)]
            moto_samples = []
            for _ in range(runs):
                seconds, sizes = moto.answer_seconds(exids, names)
                moto_samples.append(seconds)
            results[f"plan_{tunnels}"] = {
                "moto_seconds": median(moto_samples),
                "answer_bytes": sum(sizes),
                "seconds": median([seconds for seconds, _, _ in samples]),
                "peak_mb": max(peak for _, peak, _ in samples),
                "cpu_seconds": median([cpu for _, _, cpu in samples]),
                "requests": len(requests),
                "actions": requests,
            }

        # 3: apply opening and closing 1 and 20 tunnels (bastions already running)
        for tunnels, parallelism in ((1, 10), (20, 10), (20, 20)):
            opens, closes, busy = [], [], []
            for _ in range(max(3, runs // 2)):
                open(path, "w").write(manifest(tunnels, min(10, tunnels)))
                before = cpu_busy_seconds()
                seconds = run_measured([declastruct, "apply", "--auto-approve", "--parallelism", str(parallelism)],
                                       env, work)[0]
                busy.append((cpu_busy_seconds() - before) / seconds / os.cpu_count())
                opens.append(seconds)
                open(path, "w").write(manifest(tunnels, min(10, tunnels), status="CLOSED"))
                closes.append(run_measured([declastruct, "apply", "--auto-approve", "--parallelism", str(parallelism)],
                                           env, work)[0])
            suffix = "" if parallelism == 10 else f"_p{parallelism}"
            results[f"apply_open_{tunnels}{suffix}"] = median(opens)
            results[f"apply_close_{tunnels}{suffix}"] = median(closes)
            results[f"apply_open_{tunnels}{suffix}_cpu"] = median(busy)

        # 4: what opening one tunnel adds to the session program's own time to be ready
        local_port = free_port()
        results["session_ready"] = median([
            session_ready_seconds(fake, env, instance_ids[0], writers[0], local_port, work) for _ in range(runs)])
        results["tunnel_overhead"] = results["apply_open_1"] - results["plan_1"]["seconds"] - results["session_ready"]

        # 6: process cost of validate, and a supervisor's resident memory after traffic
        open(path, "w").write(manifest(1, 1))
        samples = [run_measured([declastruct, "validate"], env, work) for _ in range(runs * 2)]
        results["validate_seconds"] = median([seconds for seconds, _ in samples])
        results["validate_peak_mb"] = max(peak for _, peak in samples)
        run_measured([declastruct, "apply", "--auto-approve"], env, work)
        tunnels_dir = os.path.join(work, "home", "tunnels")
        pid = int(open(next(os.path.join(tunnels_dir, name) for name in os.listdir(tunnels_dir)
                            if name.endswith(".pid"))).read())
        for _ in range(50):
            connection = socket.create_connection(("127.0.0.1", 30000))
            connection.sendall(bytes([0, 0, 0, 8, 4, 210, 22, 47]))
            connection.recv(1)
            connection.sendall(b"x" * 65536)
            connection.close()
        results["supervisor_rss_mb"] = rss_mb(pid)
        # an idle tunnel's supervisor should sleep in the kernel, not poll
        before = context_switches(pid)
        time.sleep(2)
        results["supervisor_wakeups_per_second"] = (context_switches(pid) - before) / 2

        # 7: who holds the local port: the session program, not declastruct
        holder = subprocess.run(["ss", "-ltnpH", "sport = :30000"], capture_output=True, text=True).stdout
        results["port_holder"] = holder.split("users:")[-1].strip() if holder else "(ss unavailable)"
        open(path, "w").write(manifest(1, 1, status="CLOSED"))
        run_measured([declastruct, "apply", "--auto-approve"], env, work)
    finally:
        postgres.stop()
        moto.stop()
        shutil.rmtree(work, ignore_errors=True)

    plan_1, plan_100 = results["plan_1"]["seconds"], results["plan_100"]["seconds"]
    print("| measure | value | target | met |")
    print("|---|---|---|---|")
    for tunnels in (1, 10, 50, 100):
        entry = results[f"plan_{tunnels}"]
        print(f"| plan, {tunnels} tunnels: AWS requests | {entry['requests']} ({', '.join(sorted(set(entry['actions'])))}) "
              f"| same at 1, 10, 100; at most 4 | {'yes' if entry['requests'] <= 4 else 'NO'} |")
    for tunnels in (1, 10, 50, 100):
        entry = results[f"plan_{tunnels}"]
        print(f"| plan, {tunnels} tunnels: wall time (median) / peak memory | {entry['seconds'] * 1000:.0f} ms / "
              f"{entry['peak_mb']:.1f} MB | | |")
    print(f"| plan 100 / plan 1 | {plan_100 / plan_1:.2f} | ≤ 1.5 | {'yes' if plan_100 / plan_1 <= 1.5 else 'NO'} |")
    for tunnels in (1, 100):
        entry = results[f"plan_{tunnels}"]
        print(f"| plan, {tunnels} tunnels: moto's own time to answer its 2 requests (sent concurrently, raw HTTP; "
              f"{entry['answer_bytes'] // 1024} KiB of XML) / the rest (declastruct) | "
              f"{entry['moto_seconds'] * 1000:.0f} ms / {(entry['seconds'] - entry['moto_seconds']) * 1000:.0f} ms | | |")
    cpu_1, cpu_100 = results["plan_1"]["cpu_seconds"], results["plan_100"]["cpu_seconds"]
    print(f"| plan, 1 / 100 tunnels: declastruct's own CPU time (user + system, median) | {cpu_1 * 1000:.1f} ms / "
          f"{cpu_100 * 1000:.1f} ms = {cpu_100 / cpu_1:.2f} × | | |")
    ours_1 = plan_1 - results["plan_1"]["moto_seconds"]
    ours_100 = plan_100 - results["plan_100"]["moto_seconds"]
    print(f"| plan 100 / plan 1, without moto's own time | {ours_100 / ours_1:.2f} | ≤ 1.5 | "
          f"{'yes' if ours_100 / ours_1 <= 1.5 else 'NO'} |")
    peer_seconds, peer_mb = 2.79, 186
    plan_50 = results["plan_50"]
    print(f"| plan 50 vs the TypeScript peer (2.79 s, 186 MB) | {plan_50['seconds'] / peer_seconds:.3f} × time, "
          f"{plan_50['peak_mb'] / peer_mb:.3f} × memory | < 0.1 × both | "
          f"{'yes' if plan_50['seconds'] < peer_seconds / 10 and plan_50['peak_mb'] < peer_mb / 10 else 'NO'} |")
    for verb in ("open", "close"):
        one, twenty = results[f"apply_{verb}_1"], results[f"apply_{verb}_20"]
        print(f"| apply {verb} 1 / 20 tunnels | {one * 1000:.0f} ms / {twenty * 1000:.0f} ms = {twenty / one:.2f} × "
              f"| ≤ 2 × | {'yes' if twenty / one <= 2 else 'NO'} |")
    print(f"| apply open 20 / 1 at --parallelism 20 (one wave) | {results['apply_open_20_p20'] / results['apply_open_1']:.2f} × "
          f"(close {results['apply_close_20_p20'] / results['apply_close_1']:.2f} ×) | | |")
    print(f"| CPU busy while opening 1 / 20 tunnels (all {os.cpu_count()} cores) | "
          f"{results['apply_open_1_cpu'] * 100:.0f} % / {results['apply_open_20_cpu'] * 100:.0f} % | | |")
    print(f"| session program's own time to ready | {results['session_ready'] * 1000:.0f} ms | | |")
    print(f"| opening 1 tunnel adds (apply open 1 − plan 1 − session ready) | {results['tunnel_overhead'] * 1000:.0f} ms "
          f"| ≤ 100 ms | {'yes' if results['tunnel_overhead'] <= 0.1 else 'NO'} |")
    print(f"| validate, 1 tunnel: wall (median) / peak memory | {results['validate_seconds'] * 1000:.1f} ms / "
          f"{results['validate_peak_mb']:.1f} MB | < 20 ms, < 15 MB | "
          f"{'yes' if results['validate_seconds'] < 0.02 and results['validate_peak_mb'] < 15 else 'NO'} |")
    print(f"| supervisor resident memory after traffic | {results['supervisor_rss_mb']:.1f} MB | < 8 MB | "
          f"{'yes' if results['supervisor_rss_mb'] < 8 else 'NO'} |")
    print(f"| an idle tunnel's supervisor: wake-ups per second | {results['supervisor_wakeups_per_second']:.1f} | | |")
    print(f"| local port held by | {results['port_holder']} | the session program | "
          f"{'yes' if 'fake-aws-cli' in results['port_holder'] else 'check'} |")


if __name__ == "__main__":
    sys.exit(main())
