"""A real single-node Kubernetes cluster on this machine, with no Docker: the test control plane
(tests/k8s) plus containerd, a kubelet, kube-proxy and CoreDNS from `hack/tools.sh node`, and the
images from `hack/node/images.sh`. Everything listens on addresses the harness creates in the
benchmarking range (node 198.18.0.1 on a link of its own, pods 198.18.1.0/24 on a CNI bridge, Services
198.19.0.0/16); CoreDNS answers cluster.local only, so nothing leaves the machine.

From pytest: the session fixture `node` (tests/node/conftest.py). From a shell:
`python -m tests.node.node up|down` (`make node-up` / `make node-down`); `down` also restores a host
that a crashed run left behind. See hack/node/README.md."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tests.k8s.controlplane import (
    NODE_NAME,
    ROOT,
    TOOLS_BIN,
    ControlPlane,
    ControlPlaneError,
    _free_port,
    _stop_group,
)
from tests.node.host import CGROUP_ROOT, HostSnapshot, join_cgroup, kill_cgroup_tree, make_cgroup_tree

NODE_IP = "198.18.0.1"
NODE_LINK = "mg2node0"
POD_CIDR = "198.18.1.0/24"
BRIDGE = "mg2br0"
SERVICE_CIDR = "198.19.0.0/16"
CNI_PLUGINS = Path("/usr/lib/cni")
STATE = ROOT / ".tools" / "node"
WORKDIR = STATE / "run"
LOCK = Path("/run/lock/magent2-node.lock")  # one node per machine: its addresses are fixed


class NodeError(ControlPlaneError):
    pass


def images() -> dict[str, str]:
    """The image references and archives hack/node/images.sh built (NAME=value lines)."""
    path = STATE / "images.env"
    if not path.exists():
        raise NodeError(f"{path} is missing: run `make node-images` (hack/node/images.sh)")
    return dict(line.split("=", 1) for line in path.read_text().split())


@dataclass
class Node:
    workdir: Path = WORKDIR
    plane: ControlPlane = field(init=False)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _lock: IO[str] | None = None

    def __post_init__(self) -> None:
        self.plane = ControlPlane(
            self.workdir / "k8s", address=NODE_IP, service_cidr=SERVICE_CIDR, for_node=True
        )

    @property
    def snapshot_file(self) -> Path:
        return STATE / "host-snapshot.json"

    # -- start ---------------------------------------------------------------------------------
    def start(self, timeout: float = 120.0) -> None:
        began = time.monotonic()
        for name in ("kubelet", "kube-proxy", "kube-scheduler", "coredns"):
            self.plane.binary(name)
        self._take_host()
        self.workdir.mkdir(parents=True)
        _ip("link", "add", NODE_LINK, "type", "bridge")  # a link with no ports: just an address
        _ip("addr", "add", f"{NODE_IP}/32", "dev", NODE_LINK)
        _ip("link", "set", NODE_LINK, "up")
        for name, value in (
            ("net/ipv4/ip_forward", "1"),
            ("net/bridge/bridge-nf-call-iptables", "1"),
            ("net/bridge/bridge-nf-call-ip6tables", "1"),
        ):
            (Path("/proc/sys") / name).write_text(value)
        make_cgroup_tree(CGROUP_ROOT)
        self.plane.start()
        self._start_containerd()
        self._import_images()
        self._start_coredns()
        self._start_kube_proxy()
        self._start_kubelet()
        self._wait_node_ready(timeout - (time.monotonic() - began))
        self.started_in = time.monotonic() - began

    def _take_host(self) -> None:
        STATE.mkdir(parents=True, exist_ok=True)
        LOCK.parent.mkdir(parents=True, exist_ok=True)
        self._lock = LOCK.open("w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"node: another node holds {LOCK}; waiting for it ...", file=sys.stderr)
            fcntl.flock(self._lock, fcntl.LOCK_EX)
        if self.snapshot_file.exists():  # a run that died before its tear-down
            restore_host(self.snapshot_file, self.workdir)
        shutil.rmtree(self.workdir, ignore_errors=True)
        HostSnapshot.take().save(self.snapshot_file)

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = (self.workdir / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True)
        join_cgroup(self.processes[name].pid, f"{CGROUP_ROOT}/host")
        pids = {n: p.pid for n, p in {**self.plane.processes, **self.processes}.items()}
        (STATE / "pids.json").write_text(json.dumps(pids))

    def _write(self, name: str, text: str) -> Path:
        path = self.workdir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    @property
    def containerd_socket(self) -> Path:
        return self.workdir / "containerd" / "containerd.sock"

    def _start_containerd(self) -> None:
        base = self.workdir / "containerd"
        cni = self._write(
            "cni/10-magent2.conflist",
            json.dumps(
                {
                    "cniVersion": "1.0.0",
                    "name": "magent2",
                    "plugins": [
                        {
                            "type": "bridge",
                            "bridge": BRIDGE,
                            "isGateway": True,
                            "ipMasq": False,  # nothing leaves the machine, so no NAT to the outside
                            "hairpinMode": True,
                            "ipam": {
                                "type": "host-local",
                                "ranges": [[{"subnet": POD_CIDR}]],
                                "routes": [{"dst": "0.0.0.0/0"}],
                                "dataDir": str(self.workdir / "cni-ipam"),
                            },
                        },
                        {"type": "loopback"},
                    ],
                }
            ),
        )
        config = self._write(
            "containerd/config.toml",
            f"""version = 2
root = "{base}/root"
state = "{base}/state"
[grpc]
  address = "{self.containerd_socket}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{base}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{images()["PAUSE_IMAGE"]}"
  # Without CAP_SYS_RESOURCE runc cannot lower the sandbox's oom_score_adj.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_PLUGINS}"
    conf_dir = "{cni.parent}"
""",
        )
        self._spawn("containerd", ["containerd", "--config", str(config)])
        _wait(lambda: self._ctr("version", check=False).returncode == 0, 30, "containerd to answer")

    def _ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["ctr", "--address", str(self.containerd_socket), "-n", "k8s.io", *args],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if check and result.returncode != 0:
            raise NodeError(f"ctr {' '.join(args)} failed: {result.stderr}")
        return result

    def _import_images(self) -> None:
        for name, archive in images().items():
            if name.endswith("_ARCHIVE"):
                self._ctr("images", "import", archive)

    def _start_coredns(self) -> None:
        self.plane.kubectl(
            "create", "clusterrolebinding", "magent2-coredns", "--clusterrole=view", "--user=magent2:coredns"
        )
        kubeconfig = self.plane.write_kubeconfig(self.workdir / "coredns.kubeconfig", "coredns")
        # Only cluster.local: any other name is refused, never forwarded off the machine.
        corefile = self._write(
            "Corefile",
            f"""cluster.local:53 {{
    bind {NODE_IP}
    errors
    kubernetes cluster.local {{
        kubeconfig {kubeconfig} magent2-test
    }}
}}
""",
        )
        self._spawn("coredns", [self.plane.binary("coredns"), "-conf", str(corefile)])

    def _start_kube_proxy(self) -> None:
        kubeconfig = self.plane.write_kubeconfig(self.workdir / "kube-proxy.kubeconfig", "kube-proxy")
        config = self._write(
            "kube-proxy.yaml",
            json.dumps(
                {
                    "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
                    "kind": "KubeProxyConfiguration",
                    "clientConnection": {"kubeconfig": str(kubeconfig)},
                    "mode": "iptables",
                    "clusterCIDR": POD_CIDR,
                    "hostnameOverride": NODE_NAME,
                    "bindAddress": NODE_IP,
                    "healthzBindAddress": f"127.0.0.1:{_free_port()}",
                    "metricsBindAddress": f"127.0.0.1:{_free_port()}",
                    "nodePortAddresses": [f"{NODE_IP}/32"],
                    # Leave the host's conntrack settings alone.
                    "conntrack": {
                        "maxPerCore": 0,
                        "tcpEstablishedTimeout": "0s",
                        "tcpCloseWaitTimeout": "0s",
                    },
                }
            ),
        )
        self._spawn("kube-proxy", [self.plane.binary("kube-proxy"), "--config", str(config)])

    def _start_kubelet(self) -> None:
        kubeconfig = self.plane.write_kubeconfig(self.workdir / "kubelet.kubeconfig", "kubelet")
        resolv = self._write(
            "resolv.conf", ""
        )  # pods get cluster DNS only, none of the host's search domains
        config = self._write(
            "kubelet.yaml",
            json.dumps(
                {
                    "apiVersion": "kubelet.config.k8s.io/v1beta1",
                    "kind": "KubeletConfiguration",
                    # This machine kind has cgroup v1 and no systemd.
                    "failCgroupV1": False,
                    "cgroupDriver": "cgroupfs",
                    "cgroupRoot": f"/{CGROUP_ROOT}",
                    "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
                    "address": NODE_IP,
                    "port": _free_port(),
                    "readOnlyPort": 0,
                    "healthzBindAddress": "127.0.0.1",
                    "healthzPort": _free_port(),
                    "clusterDNS": [NODE_IP],
                    "clusterDomain": "cluster.local",
                    "resolvConf": str(resolv),
                    "podLogsDir": str(self.workdir / "pod-logs"),
                    "authentication": {
                        "anonymous": {"enabled": False},
                        "webhook": {"enabled": True},
                        "x509": {"clientCAFile": str(self.plane.workdir / "pki" / "ca.crt")},
                    },
                    "authorization": {"mode": "Webhook"},
                    "failSwapOn": False,
                    # Nothing can be pulled again: never collect images, evict only when nearly full.
                    "imageGCHighThresholdPercent": 100,
                    "imageGCLowThresholdPercent": 99,
                    "evictionHard": {
                        "memory.available": "100Mi",
                        "nodefs.available": "1%",
                        "imagefs.available": "1%",
                    },
                    "serializeImagePulls": False,
                }
            ),
        )
        self._spawn(
            "kubelet",
            [
                self.plane.binary("kubelet"),
                "--config",
                str(config),
                "--kubeconfig",
                str(kubeconfig),
                "--root-dir",
                str(self.workdir / "kubelet"),
                "--hostname-override",
                NODE_NAME,
                "--node-ip",
                NODE_IP,
                "--v=1",
            ],
        )

    def _wait_node_ready(self, timeout: float) -> None:
        def ready() -> bool:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    tail = (self.workdir / f"{name}.log").read_text(errors="replace")[-3000:]
                    raise NodeError(f"{name} exited with {process.returncode}:\n{tail}")
            result = self.plane.kubectl(
                "get",
                "node",
                NODE_NAME,
                "-o",
                "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
                check=False,
            )
            return result.stdout.strip() == "True"

        _wait(ready, timeout, f"node {NODE_NAME} to be Ready")
        # The lifecycle controller lifts the not-ready taint a moment after Ready.
        _wait(
            lambda: (
                "not-ready"
                not in self.plane.kubectl("get", "node", NODE_NAME, "-o", "jsonpath={.spec.taints}").stdout
            ),
            60,
            "the not-ready taint to be lifted",
        )

    # -- use -------------------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        return self.plane.env()

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self.plane.kubectl(*args, input=input, check=check)

    def helm(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.plane.binary("helm"), *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise NodeError(f"helm {' '.join(args)} failed: {result.stdout}{result.stderr}")
        return result

    def local_volume(self, name: str, size: str = "1Gi", owner: int = 10001) -> None:
        """A hostPath PersistentVolume for one claim, owned by the pods' non-root user (no provisioner runs)."""
        path = self.workdir / "volumes" / name
        path.mkdir(parents=True)
        os.chown(path, owner, owner)
        self.kubectl(
            "apply",
            "-f",
            "-",
            input=json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolume",
                    "metadata": {"name": name},
                    "spec": {
                        "capacity": {"storage": size},
                        "accessModes": ["ReadWriteOnce"],
                        "persistentVolumeReclaimPolicy": "Delete",
                        "hostPath": {"path": str(path), "type": "Directory"},
                    },
                }
            ),
        )

    # -- stop ------------------------------------------------------------------------------------
    def stop(self) -> list[str]:
        """Stop everything and put the host back; returns what could not be restored."""
        for name in ("kubelet", "kube-proxy", "coredns", "containerd"):
            if name in self.processes:
                _stop_group(self.processes[name].pid, process=self.processes[name])
        kill_cgroup_tree(CGROUP_ROOT)  # containers and their shims outlive the kubelet and containerd
        self.plane.stop()
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
        self.processes.clear()
        problems = restore_host(self.snapshot_file, self.workdir)
        (STATE / "pids.json").unlink(missing_ok=True)
        if self._lock:
            self._lock.close()
        return problems


def restore_host(snapshot_file: Path, workdir: Path) -> list[str]:
    kill_cgroup_tree(CGROUP_ROOT)
    problems = HostSnapshot.load(snapshot_file).restore(workdir)
    snapshot_file.unlink()
    return problems


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def _wait(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.3)
    raise NodeError(f"timed out after {timeout:.0f}s waiting for {what}")


# -- shell entry points (make node-up / make node-down) ---------------------------------------
def up() -> None:
    node = Node()
    try:
        node.start()
    except BaseException:
        node.stop()
        raise
    shutil.copy(node.plane.kubeconfig, STATE / "kubeconfig")
    print(f"node {NODE_NAME} Ready in {node.started_in:.1f}s; API server {node.plane.server}")
    print(f"export KUBECONFIG={STATE / 'kubeconfig'} PATH={TOOLS_BIN}:$PATH")
    # The processes keep running after this script exits; `down` stops them by their groups.
    os._exit(0)


def down() -> None:
    pids_file = STATE / "pids.json"
    if pids_file.exists():
        for pid in reversed(list(json.loads(pids_file.read_text()).values())):
            _stop_group(pid)
        kill_cgroup_tree(CGROUP_ROOT)
        pids_file.unlink()
    snapshot = STATE / "host-snapshot.json"
    if not snapshot.exists():
        print("no node is running")
        return
    problems = restore_host(snapshot, WORKDIR)
    shutil.rmtree(WORKDIR, ignore_errors=True)
    print(
        "node stopped; host restored"
        if not problems
        else "node stopped; NOT restored: " + "; ".join(problems)
    )


if __name__ == "__main__":
    commands = {"up": up, "down": down}
    if len(sys.argv) != 2 or sys.argv[1] not in commands:
        sys.exit("usage: python -m tests.node.node up|down")
    commands[sys.argv[1]]()
