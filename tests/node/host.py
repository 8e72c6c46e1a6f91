"""What a node changes on the host, and putting it back: sysctls, the nftables ruleset (iptables
here is iptables-nft), network links, mounts, cgroups and the few fixed paths containerd, CNI and
the kubelet write to. A snapshot is taken before the node starts and restored after it stops."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

CGROUP_ROOT = "magent2-node"  # the kubelet's cgroupRoot: every pod and container lives under it
SYSCTLS = (
    "net/ipv4/ip_forward",
    "net/ipv4/conf/all/route_localnet",
    "net/bridge/bridge-nf-call-iptables",
    "net/bridge/bridge-nf-call-ip6tables",
    "net/netfilter/nf_conntrack_max",
    "net/netfilter/nf_conntrack_tcp_timeout_established",
    "net/netfilter/nf_conntrack_tcp_timeout_close_wait",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
    "vm/overcommit_memory",
    "vm/panic_on_oom",
)
# Paths written outside the node's own directory, whatever it is configured with.
FIXED_PATHS = (
    "/run/containerd",
    "/run/netns",
    "/var/lib/cni",
    "/var/log/containers",
    "/var/log/pods",
    "/var/lib/kubelet",
    "/opt/containerd",
    "/etc/cni",
)


def _run(*argv: str, input: str | None = None, check: bool = True) -> str:
    result = subprocess.run(argv, input=input, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
    return result.stdout


def _mountpoints() -> list[str]:
    return [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]


def _links() -> list[str]:
    return [entry["ifname"] for entry in json.loads(_run("ip", "-json", "link", "show") or "[]")]


@dataclass
class HostSnapshot:
    sysctls: dict[str, str] = field(default_factory=dict)
    ruleset: str = ""
    links: list[str] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)

    @classmethod
    def take(cls) -> HostSnapshot:
        sysctls = {}
        for name in SYSCTLS:
            path = Path("/proc/sys") / name
            if path.exists():
                sysctls[name] = path.read_text().strip()
        return cls(
            sysctls=sysctls,
            ruleset=_run("nft", "list", "ruleset"),
            links=_links(),
            mounts=_mountpoints(),
            paths=[path for path in FIXED_PATHS if os.path.lexists(path)],
        )

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: Path) -> HostSnapshot:
        return cls(**json.loads(path.read_text()))

    def restore(self, workdir: Path) -> list[str]:
        """Undo the node's changes; returns what could not be undone (empty when all went back)."""
        problems: list[str] = []
        kill_cgroup_tree(CGROUP_ROOT)
        for mountpoint in reversed(_mountpoints()):
            if mountpoint not in self.mounts and (
                mountpoint.startswith(str(workdir)) or mountpoint.startswith(FIXED_PATHS)
            ):
                _run("umount", "-l", mountpoint, check=False)
        for link in _links():
            if link not in self.links:
                _run("ip", "link", "delete", link, check=False)
        _run("nft", "flush", "ruleset")
        if self.ruleset.strip():
            _run("nft", "-f", "-", input=self.ruleset)
        for name, value in self.sysctls.items():
            try:
                (Path("/proc/sys") / name).write_text(value)
            except OSError as exc:
                problems.append(f"sysctl {name}={value}: {exc}")
        for path in FIXED_PATHS:
            if path not in self.paths and os.path.lexists(path):
                shutil.rmtree(path, ignore_errors=True)
        problems += remove_cgroup_tree(CGROUP_ROOT)
        if left := [m for m in _mountpoints() if m not in self.mounts]:
            problems.append(f"mounts left: {left}")
        if extra := [link for link in _links() if link not in self.links]:
            problems.append(f"links left: {extra}")
        return problems


def _hierarchies() -> list[Path]:
    root = Path("/sys/fs/cgroup")
    return [path for path in root.iterdir() if path.is_dir() and (path / "cgroup.procs").exists()]


def kill_cgroup_tree(name: str, timeout: float = 10.0) -> None:
    """SIGKILL every process left in the node's cgroups (containers and shims outlive the kubelet)
    and wait until they are gone."""
    deadline = time.monotonic() + timeout
    while pids := {
        int(pid)
        for hierarchy in _hierarchies()
        if (hierarchy / name).exists()
        for procs in (hierarchy / name).rglob("cgroup.procs")
        for pid in procs.read_text().split()
    }:
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes {sorted(pids)} in cgroup {name} survived SIGKILL")
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def _mkdir_cgroup(path: Path) -> None:
    if path.exists():
        return
    _mkdir_cgroup(path.parent)
    path.mkdir()
    # A new v1 cpuset starts with no CPUs and no memory nodes, and takes no process until given some.
    for name in ("cpuset.cpus", "cpuset.mems"):
        if (path / name).exists():
            (path / name).write_text((path.parent / name).read_text())


def make_cgroup_tree(name: str) -> None:
    for hierarchy in _hierarchies():
        _mkdir_cgroup(hierarchy / name)


def join_cgroup(pid: int, path: str) -> None:
    """Move `pid` into `path` (under the node's tree) in every hierarchy: what it starts later, such
    as containerd's shims, starts there too, so tear-down finds it."""
    for hierarchy in _hierarchies():
        _mkdir_cgroup(hierarchy / path)
        (hierarchy / path / "cgroup.procs").write_text(str(pid))


def remove_cgroup_tree(name: str) -> list[str]:
    problems = []
    for hierarchy in _hierarchies():
        tree = hierarchy / name
        if not tree.exists():
            continue
        # Children first; a cgroup directory is removed with rmdir, never by deleting its files.
        for directory in sorted((p for p in tree.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                directory.rmdir()
        try:
            tree.rmdir()
        except OSError as exc:
            problems.append(f"cgroup {tree}: {exc}")
    return problems
