"""A Ray cluster of one head and several worker raylets on this machine.

It exercises the multi-node code paths (several raylets, ``ray job submit``, placement across
nodes) without a real cluster. Each node is a ``ray start --block`` process in its own session;
``stop()`` ends exactly those sessions, never other Ray processes (``ray stop`` would kill every
Ray process of the user, an embedded test Ray included).

    python -m moldiff.local_cluster start --workers 1     # prints the addresses, Ctrl-C stops it
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Optional


def _is_zombie(pid: int) -> bool:
    """An ended process its parent has not reaped yet (state Z in /proc/<pid>/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


class LocalCluster:
    def __init__(self, n_workers: int = 1, cpus_per_node: int = 2, temp_dir: Optional[str] = None,
                 env: Optional[dict] = None, ray_executable: Optional[str] = None):
        self.n_workers, self.cpus_per_node = n_workers, cpus_per_node
        self.port, self.dashboard_port = free_port(), free_port()
        # Ray's unix sockets live under the temp dir: keep the path short
        self.temp_dir = temp_dir or tempfile.mkdtemp(prefix="mdray")
        self.env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", **(env or {})}
        self.ray = ray_executable or str(Path(sys.executable).with_name("ray"))
        self.nodes: list[subprocess.Popen] = []
        self.logs: list[Path] = []

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def gcs_address(self) -> str:
        return f"{socket.gethostbyname(socket.gethostname())}:{self.port}"

    def _start_node(self, args: list[str], name: str) -> None:
        log = Path(self.temp_dir) / f"{name}.log"
        self.logs.append(log)
        proc = subprocess.Popen([self.ray, "start", "--block", "--disable-usage-stats",
                                 f"--num-cpus={self.cpus_per_node}", *args],
                                env=self.env, start_new_session=True, stdout=open(log, "w"), stderr=subprocess.STDOUT)
        self.nodes.append(proc)

    def node_ids(self) -> list[str]:
        """The Ray node ids of the cluster's live raylets (from the dashboard; [] while it is down)."""
        try:
            with urllib.request.urlopen(f"{self.dashboard_url}/nodes?view=summary", timeout=5) as resp:
                import json
                summary = json.loads(resp.read())["data"]["summary"]
            return [n["raylet"]["nodeId"] for n in summary if n.get("raylet", {}).get("state") == "ALIVE"]
        except Exception:
            return []

    def _alive_nodes(self) -> int:
        return len(self.node_ids())

    def start(self, timeout: float = 180.0) -> "LocalCluster":
        self._start_node(["--head", f"--port={self.port}", f"--dashboard-port={self.dashboard_port}",
                          "--dashboard-host=127.0.0.1", f"--ray-client-server-port={free_port()}",
                          # its own agent ports: another Ray on this machine may hold the defaults
                          f"--dashboard-agent-listen-port={free_port()}", f"--metrics-export-port={free_port()}",
                          f"--temp-dir={self.temp_dir}"], "head")
        deadline = time.time() + timeout
        while self._alive_nodes() < 1:
            self._check_running(deadline)
        for i in range(self.n_workers):
            # Each raylet gets its own temp dir, as separate machines would: sharing the head's, a
            # second node's runtime-env agent re-extracts the job's working_dir in place (Ray
            # always overwrites it there), deleting the directory the job's driver runs in; and
            # both log monitors forward every worker's log lines, so each appears twice.
            self._start_node([f"--address={self.gcs_address}", f"--dashboard-agent-listen-port={free_port()}",
                              f"--metrics-export-port={free_port()}", f"--temp-dir={self.temp_dir}/node{i + 1}"],
                             f"worker{i}")
        while self._alive_nodes() < 1 + self.n_workers:
            self._check_running(deadline)
        self._wait_for_job_agent(deadline)
        return self

    def _wait_for_job_agent(self, deadline: float) -> None:
        """Nodes can be alive before the head's job agent has registered (slow on a loaded
        machine): until then `ray job submit` fails with "No available agent". Submit a no-op job
        until one is accepted."""
        from ray.job_submission import JobSubmissionClient

        while True:
            try:
                JobSubmissionClient(self.dashboard_url).submit_job(entrypoint="true")
                return
            except Exception as err:            # the SDK raises RuntimeError with the server's message
                if "No available agent" not in str(err) and "Connection" not in type(err).__name__:
                    raise
            self._check_running(deadline)

    def _check_running(self, deadline: float) -> None:
        dead = [(p, log) for p, log in zip(self.nodes, self.logs) if p.poll() is not None]
        if dead or time.time() > deadline:
            self.stop()
            detail = "\n".join(f"--- {log}:\n{log.read_text()[-2000:]}" for _, log in (dead or zip(self.nodes, self.logs)))
            raise RuntimeError(f"local Ray cluster did not start ({'a node exited' if dead else 'timeout'}):\n{detail}")
        time.sleep(1.0)

    def _session_pids(self) -> list[int]:
        sessions = {p.pid for p in self.nodes}
        pids = []
        for p in self.nodes:        # reap the node processes that ended: a zombie keeps its session id
            p.poll()
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    if os.getsid(int(entry)) in sessions and not _is_zombie(int(entry)):
                        pids.append(int(entry))
                except (ProcessLookupError, PermissionError):
                    pass
        return pids

    def stop(self, grace: float = 5.0, timeout: float = 30.0) -> None:
        """SIGTERM to every process of the cluster's sessions; what is left after ``grace`` seconds
        (``ray start --block`` and its raylets can take half a minute to end) gets SIGKILL."""
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, timeout)):
            for pid in self._session_pids():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.time() + wait
            while self._session_pids() and time.time() < deadline:
                time.sleep(0.5)
            if not self._session_pids():
                break
        for p in self.nodes:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self.nodes.clear()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> "LocalCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["start"])
    p.add_argument("--workers", type=int, default=1, help="worker raylets besides the head")
    p.add_argument("--cpus-per-node", type=int, default=2)
    args = p.parse_args(argv)
    cluster = LocalCluster(args.workers, args.cpus_per_node).start()
    print(f"Ray cluster up: {1 + args.workers} nodes\n  RAY_ADDRESS={cluster.dashboard_url}  (ray job submit)\n"
          f"  GCS {cluster.gcs_address}  (ray.init / ray.address)\nCtrl-C (or SIGTERM) stops it.", flush=True)
    # a script's background job ignores SIGINT: let `kill` stop the cluster as cleanly as Ctrl-C
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        cluster.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
