#!/usr/bin/env python3
"""The whole footprint of an open native tunnel, as users run it: `declastruct apply` opens one tunnel with
`DECLASTRUCT_TRANSPORT=native` against moto, the SSM simulator (`ssm-sim`) and a local PostgreSQL; the figure is the
resident memory (VmRSS, with its anonymous and file-backed parts) of every process the tunnel keeps (its
supervisor, which holds the websocket and the listener, and any child), as it settles 5 s after the open (the
supervisor releases its start-up code 3 s after its session serves), 5 s after a 20 MB upload through it (COPY
into PostgreSQL), and 65 s after it (the supervisor releases the code it ran every 60 s), and the peak (VmHWM).

Run it through scripts/bench-native-supervisor, which builds the release binaries first. Issue 24's target: 8 MB.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_e2e import REGION, Moto, Postgres, free_port, wait_port  # noqa: E402


def memory_kb(pid):
    """VmRSS, RssAnon, RssFile and VmHWM of `pid`, in kB"""
    fields = {}
    for line in open(f"/proc/{pid}/status"):
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


def tunnel_processes(supervisor):
    """the supervisor and every process below it"""
    children = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = open(f"/proc/{name}/stat").read()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(name))
    found, queue = [], [supervisor]
    while queue:
        pid = queue.pop()
        found.append(pid)
        queue.extend(children.get(pid, []))
    return found


def footprint(supervisor):
    total = {"VmRSS": 0, "RssAnon": 0, "RssFile": 0, "VmHWM": 0}
    processes = tunnel_processes(supervisor)
    for pid in processes:
        for key, value in memory_kb(pid).items():
            total[key] += value
    return total, len(processes)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--declastruct", required=True)
    parser.add_argument("--ssm-sim", required=True)
    parser.add_argument("--upload-mb", type=int, default=20)
    arguments = parser.parse_args()
    declastruct = os.path.abspath(arguments.declastruct)

    work = tempfile.mkdtemp(prefix="declastruct-native-")
    os.chmod(work, 0o711)
    moto = Moto()
    postgres = Postgres(os.path.join(work, "pg"))
    sim = None
    try:
        ec2, rds = moto.client("ec2"), moto.client("rds")
        ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": "exid", "Value": "bastion"}]}])
        writer = rds.create_db_cluster(DBClusterIdentifier="cluster", Engine="aurora-postgresql",
                                       MasterUsername="bench", MasterUserPassword="bench-password")["DBCluster"]["Endpoint"]
        sim = subprocess.Popen([os.path.abspath(arguments.ssm_sim), "--listen", "127.0.0.1:0", "--route",
                                f"{writer}:5432=127.0.0.1:{postgres.port}", "--ec2-endpoint", moto.endpoint],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        ready = sim.stdout.readline().split()
        if not ready or ready[0] != "ready":
            raise SystemExit("ssm-sim did not start")
        local_port = free_port()
        open(os.path.join(work, "declastruct.yml"), "w").write(f"""resources:
  - kind: DeclaredAwsVpcTunnel
    via: {{ mechanism: aws.ssm, bastion: {{ exid: bastion }}, transport: native }}
    into: {{ cluster: {{ name: cluster }} }}
    from: {{ host: localhost, port: {local_port} }}
    status: OPEN
    connect: {{ database: postgres, user: postgres }}
""")
        env = {
            "PATH": os.environ["PATH"], "HOME": work, "DECLASTRUCT_HOME": os.path.join(work, "home"),
            "AWS_ENDPOINT_URL": moto.endpoint, "AWS_ENDPOINT_URL_SSM": ready[1],
            "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        started = time.perf_counter()
        subprocess.run([declastruct, "apply", "--auto-approve", "-q"], env=env, cwd=work, check=True)
        opened = time.perf_counter() - started
        tunnels = os.path.join(work, "home", "tunnels")
        supervisor = int(open(next(os.path.join(tunnels, name) for name in os.listdir(tunnels)
                                   if name.endswith(".pid"))).read().split()[0])
        time.sleep(5)
        after_open, processes = footprint(supervisor)

        # an upload through the tunnel: COPY of N MB of rows into a temporary table
        psql = os.path.join(postgres.bin, "psql")
        rows = b"x" * 1023 + b"\n"
        copy = subprocess.Popen([psql, "-h", "127.0.0.1", "-p", str(local_port), "-U", "postgres", "-q", "-c",
                                 "create temp table t(x text); copy t from stdin"],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        started = time.perf_counter()
        for _ in range(arguments.upload_mb * 1024):
            copy.stdin.write(rows)
        copy.stdin.close()
        if copy.wait() != 0:
            raise SystemExit(f"psql failed: {copy.stderr.read().decode()}")
        upload = arguments.upload_mb / (time.perf_counter() - started)
        time.sleep(5)
        after_upload, _ = footprint(supervisor)
        time.sleep(60)
        settled, _ = footprint(supervisor)

        mb = lambda kb: f"{kb / 1024:.1f} MB"  # noqa: E731
        met = lambda kb: "met" if kb <= 8192 else "NOT met"  # noqa: E731
        print(f"| an open native tunnel ({processes} process{'es' if processes > 1 else ''}) | 5 s after open | "
              f"5 s after a {arguments.upload_mb} MB upload ({upload:.0f} MB/s) | 65 s after it | peak |")
        print("|---|---|---|---|---|")
        print(f"| resident (VmRSS) | {mb(after_open['VmRSS'])} | {mb(after_upload['VmRSS'])} | "
              f"{mb(settled['VmRSS'])} | {mb(settled['VmHWM'])} |")
        print(f"| anonymous / file-backed | {mb(after_open['RssAnon'])} / {mb(after_open['RssFile'])} | "
              f"{mb(after_upload['RssAnon'])} / {mb(after_upload['RssFile'])} | "
              f"{mb(settled['RssAnon'])} / {mb(settled['RssFile'])} | |")
        print(f"| 8 MB target | {met(after_open['VmRSS'])} | {met(after_upload['VmRSS'])} | {met(settled['VmRSS'])} | |")
        print(f"apply opened it in {opened * 1000:.0f} ms")
        open(os.path.join(work, "declastruct.yml"), "w").write("resources: []\n")
        subprocess.run([declastruct, "apply", "--auto-approve", "-q"], env=env, cwd=work, check=False)
    finally:
        if sim is not None:
            sim.terminate()
            sim.wait()
        postgres.stop()
        moto.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
