"""A real Kubernetes control plane on loopback, the way envtest does it: etcd, kube-apiserver
(certificates, static tokens, service-account signing, RBAC) and kube-controller-manager, built
from the Go module proxy by `make tools`. No Docker, no nodes.

From pytest: the session fixture `kube` (tests/k8s/conftest.py). From a shell:
`python -m tests.k8s.controlplane up|down` (`make k8s-up` / `make k8s-down`), which leaves the
kubeconfig at .tools/kubeconfig."""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parents[2]
TOOLS_BIN = ROOT / ".tools" / "bin"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl", "helm")
NODE_NAME = "magent2-node"


class ControlPlaneError(RuntimeError):
    pass


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _write_key(path: Path, key: rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    path.chmod(0o600)


def _certificate(
    subject: str,
    key: rsa.RSAPrivateKey,
    *,
    issuer: tuple[x509.Certificate, rsa.RSAPrivateKey] | None = None,
    is_ca: bool = False,
    organization: str | None = None,
    sans: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    names = [x509.NameAttribute(NameOID.COMMON_NAME, subject)]
    if organization:
        names.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    name = x509.Name(names)
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer[0].subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if not is_ca:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage(
                [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH, x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class ControlPlane:
    """`address` is where the API server listens; `for_node` adds what a kubelet needs (a scheduler,
    the node authorizer and lifecycle controller, credentials for the node's components)."""

    workdir: Path
    bin_dir: Path = TOOLS_BIN
    address: str = "127.0.0.1"
    service_cidr: str = "10.96.0.0/16"
    for_node: bool = False
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    api_port: int = 0
    admin_token: str = ""
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://{self.address}:{self.api_port}"

    @property
    def service_ip(self) -> str:
        """The `kubernetes` Service's ClusterIP: the first address of the Service range."""
        return str(next(ipaddress.ip_network(self.service_cidr).hosts()))

    def binary(self, name: str) -> str:
        path = self.bin_dir / name
        if not os.access(path, os.X_OK):
            raise ControlPlaneError(f"{path} is missing: run `make tools` to build the Kubernetes binaries")
        return str(path)

    # -- start ------------------------------------------------------------------------------
    def start(self, timeout: float = 90.0) -> None:
        began = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        pki = self.workdir / "pki"
        pki.mkdir(exist_ok=True)
        self._write_pki(pki)
        etcd_port, peer_port, self.api_port = _free_port(), _free_port(), _free_port()
        self._spawn(
            "etcd",
            [
                self.binary("etcd"),
                "--data-dir",
                str(self.workdir / "etcd"),
                "--listen-client-urls",
                f"http://127.0.0.1:{etcd_port}",
                "--advertise-client-urls",
                f"http://127.0.0.1:{etcd_port}",
                "--listen-peer-urls",
                f"http://127.0.0.1:{peer_port}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{peer_port}",
                "--initial-cluster",
                f"default=http://127.0.0.1:{peer_port}",
                "--unsafe-no-fsync",
                "--log-level",
                "warn",
            ],
        )
        self._spawn(
            "kube-apiserver",
            [
                self.binary("kube-apiserver"),
                "--etcd-servers",
                f"http://127.0.0.1:{etcd_port}",
                "--bind-address",
                self.address,
                "--advertise-address",
                self.address,
                "--secure-port",
                str(self.api_port),
                "--tls-cert-file",
                str(pki / "apiserver.crt"),
                "--tls-private-key-file",
                str(pki / "apiserver.key"),
                "--client-ca-file",
                str(pki / "ca.crt"),
                "--token-auth-file",
                str(pki / "tokens.csv"),
                "--authorization-mode",
                "Node,RBAC" if self.for_node else "RBAC",
                "--kubelet-client-certificate",
                str(pki / "kubelet-client.crt"),
                "--kubelet-client-key",
                str(pki / "kubelet-client.key"),
                # The node's name resolves nowhere (and must not be asked of the host's DNS).
                "--kubelet-preferred-address-types",
                "InternalIP",
                "--service-account-issuer",
                "https://kubernetes.default.svc.cluster.local",
                "--service-account-key-file",
                str(pki / "sa.pub"),
                "--service-account-signing-key-file",
                str(pki / "sa.key"),
                "--service-cluster-ip-range",
                self.service_cidr,
                "--allow-privileged=true",
                *(self._aggregation_flags(pki) if self.for_node else []),
                "--v=0",
            ],
        )
        self._write_kubeconfig(self.kubeconfig, "admin", self.admin_token)
        self._wait_ready(timeout - (time.monotonic() - began))
        self._write_kubeconfig(self.workdir / "controller-manager.kubeconfig", "kcm", self.tokens["kcm"])
        # Without a node there is no node lifecycle to run; with one, its controller lifts the
        # not-ready taint once the kubelet reports Ready.
        lifecycle = "" if self.for_node else ",-nodelifecycle"
        self._spawn(
            "kube-controller-manager",
            [
                self.binary("kube-controller-manager"),
                "--kubeconfig",
                str(self.workdir / "controller-manager.kubeconfig"),
                "--bind-address",
                "127.0.0.1",
                "--secure-port",
                str(_free_port()),
                "--leader-elect=false",
                "--use-service-account-credentials=true",
                "--service-account-private-key-file",
                str(pki / "sa.key"),
                "--root-ca-file",
                str(pki / "ca.crt"),
                "--controllers",
                f"*,-nodeipam{lifecycle},-cloud-node-lifecycle,-service-lb-controller",
                "--v=0",
            ],
        )
        if self.for_node:
            scheduler_config = self.workdir / "scheduler.kubeconfig"
            self._write_kubeconfig(scheduler_config, "scheduler", self.tokens["scheduler"])
            self._spawn(
                "kube-scheduler",
                [
                    self.binary("kube-scheduler"),
                    "--kubeconfig",
                    str(scheduler_config),
                    "--bind-address",
                    "127.0.0.1",
                    "--secure-port",
                    str(_free_port()),
                    "--leader-elect=false",
                    "--v=0",
                ],
            )
        self.started_in = time.monotonic() - began

    @staticmethod
    def _aggregation_flags(pki: Path) -> list[str]:
        """The aggregation layer, so extension API servers (KEDA's metrics adapter) can serve an
        API group: the API server proxies to them as `front-proxy-client`, a client certificate
        from a CA of its own, and routes to their endpoints' addresses directly."""
        return [
            "--requestheader-client-ca-file", str(pki / "front-proxy-ca.crt"),
            "--requestheader-allowed-names", "front-proxy-client",
            "--requestheader-username-headers", "X-Remote-User",
            "--requestheader-group-headers", "X-Remote-Group",
            "--requestheader-extra-headers-prefix", "X-Remote-Extra-",
            "--proxy-client-cert-file", str(pki / "front-proxy-client.crt"),
            "--proxy-client-key-file", str(pki / "front-proxy-client.key"),
            "--enable-aggregator-routing=true",
        ]  # fmt: skip

    def _write_pki(self, pki: Path) -> None:
        ca_key = _key()
        ca = _certificate("magent2-test-ca", ca_key, is_ca=True)
        server_key = _key()
        server = _certificate(
            "kube-apiserver",
            server_key,
            issuer=(ca, ca_key),
            sans=[
                x509.DNSName("localhost"),
                x509.DNSName("kubernetes.default.svc"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                x509.IPAddress(ipaddress.ip_address(self.address)),
                x509.IPAddress(ipaddress.ip_address(self.service_ip)),
            ],
        )
        (pki / "ca.crt").write_bytes(_pem(ca))
        (pki / "apiserver.crt").write_bytes(_pem(server))
        _write_key(pki / "apiserver.key", server_key)
        # The API server's identity towards kubelets (logs, exec, port-forward).
        client_key = _key()
        client = _certificate(
            "kube-apiserver-kubelet-client", client_key, issuer=(ca, ca_key), organization="system:masters"
        )
        (pki / "kubelet-client.crt").write_bytes(_pem(client))
        _write_key(pki / "kubelet-client.key", client_key)
        proxy_ca_key = _key()
        proxy_ca = _certificate("front-proxy-ca", proxy_ca_key, is_ca=True)
        proxy_key = _key()
        proxy_client = _certificate("front-proxy-client", proxy_key, issuer=(proxy_ca, proxy_ca_key))
        (pki / "front-proxy-ca.crt").write_bytes(_pem(proxy_ca))
        (pki / "front-proxy-client.crt").write_bytes(_pem(proxy_client))
        _write_key(pki / "front-proxy-client.key", proxy_key)
        sa_key = _key()
        _write_key(pki / "sa.key", sa_key)
        (pki / "sa.pub").write_bytes(
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        # One static token per identity; the node's components get their built-in RBAC roles
        # (system:node via the node authorizer, system:node-proxier, system:kube-scheduler).
        identities = {
            "admin": ("admin", "system:masters"),
            "kcm": ("system:kube-controller-manager", ""),
            "scheduler": ("system:kube-scheduler", ""),
            "kubelet": (f"system:node:{NODE_NAME}", "system:nodes"),
            "kube-proxy": ("system:kube-proxy", ""),
            "coredns": ("magent2:coredns", ""),
        }
        self.tokens = {name: secrets.token_hex(16) for name in identities}
        self.admin_token = self.tokens["admin"]
        (pki / "tokens.csv").write_text(
            "".join(
                f'{self.tokens[name]},{user},{name}-uid,"{groups}"\n'
                for name, (user, groups) in identities.items()
            )
        )
        (pki / "tokens.csv").chmod(0o600)

    def write_kubeconfig(self, path: Path, identity: str) -> Path:
        """A kubeconfig for one of the identities in tokens.csv (admin, kubelet, kube-proxy, ...)."""
        self._write_kubeconfig(path, identity, self.tokens[identity])
        return path

    def _write_kubeconfig(self, path: Path, user: str, token: str) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "magent2-test",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority": str(self.workdir / "pki" / "ca.crt"),
                    },
                }
            ],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [
                {
                    "name": "magent2-test",
                    "context": {"cluster": "magent2-test", "user": user, "namespace": "default"},
                }
            ],
            "current-context": "magent2-test",
        }
        path.write_text(json.dumps(config, indent=2))
        path.chmod(0o600)

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = (self.workdir / f"{name}.log").open("ab")
        # A session of its own: stop() signals the whole group, so nothing is orphaned.
        self.processes[name] = subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True)
        (self.workdir / "pids.json").write_text(json.dumps({n: p.pid for n, p in self.processes.items()}))

    def _wait_ready(self, timeout: float) -> None:
        context = ssl.create_default_context(cafile=str(self.workdir / "pki" / "ca.crt"))
        request = urllib.request.Request(
            f"{self.server}/readyz", headers={"Authorization": f"Bearer {self.admin_token}"}
        )
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    tail = (self.workdir / f"{name}.log").read_text(errors="replace")[-3000:]
                    raise ControlPlaneError(f"{name} exited with {process.returncode}:\n{tail}")
            try:
                with urllib.request.urlopen(request, context=context, timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError as exc:
                last = str(exc)
            time.sleep(0.2)
        raise ControlPlaneError(f"kube-apiserver not ready after {timeout:.0f}s: {last}")

    # -- use -----------------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "PATH": f"{self.bin_dir}:{os.environ['PATH']}",
        }

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.binary("kubectl"), *args],
            input=input,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and result.returncode != 0:
            raise ControlPlaneError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result

    def start_operator(self, *, output: int = subprocess.DEVNULL, **env: str) -> subprocess.Popen[bytes]:
        """`magent2 operator` against this control plane (free ports for its endpoints; `env` wins)."""
        full = {
            **self.env(),
            "OPERATOR_HEALTH_PORT": str(_free_port()),
            "OPERATOR_METRICS_PORT": str(_free_port()),
            "REDIS_URL": "redis://redis:6379/0",
            **env,
        }
        return subprocess.Popen(
            [sys.executable, "-m", "magent2.cli", "operator"],
            env=full,
            stdout=output,
            stderr=subprocess.STDOUT,
        )

    def create_namespace(self, name: str, timeout: float = 30.0) -> None:
        """Create `name` (if missing) and wait for its default ServiceAccount, which pods need."""
        self.kubectl("create", "namespace", name, check=False)
        deadline = time.monotonic() + timeout
        while self.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"namespace {name} has no default ServiceAccount after {timeout:.0f}s"
                )
            time.sleep(0.2)

    # -- stop ------------------------------------------------------------------------------------
    def stop(self) -> None:
        for name in reversed(list(self.processes)):
            _stop_group(self.processes[name].pid, process=self.processes[name])
            self.processes[name].wait()
        self.processes.clear()


def _stop_group(pid: int, grace: float = 10.0, process: subprocess.Popen[bytes] | None = None) -> None:
    """SIGTERM the process group led by `pid`, SIGKILL it after `grace`. Pass the leader's Popen
    when it is our child: until reaped it stays a zombie, which still counts as a group member."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if process is not None:
            process.poll()
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


# -- shell entry points (make k8s-up / make k8s-down) -----------------------------------------
STATE = ROOT / ".tools" / "k8s"


def up() -> None:
    if (STATE / "pids.json").exists():
        down()
    shutil.rmtree(STATE, ignore_errors=True)
    plane = ControlPlane(STATE)
    plane.start()
    shutil.copy(plane.kubeconfig, ROOT / ".tools" / "kubeconfig")
    print(f"control plane up in {plane.started_in:.1f}s at {plane.server}")
    print(f"export KUBECONFIG={ROOT / '.tools' / 'kubeconfig'} PATH={TOOLS_BIN}:$PATH")


def down() -> None:
    pids_file = STATE / "pids.json"
    if not pids_file.exists():
        print("no control plane is running")
        return
    for pid in reversed(list(json.loads(pids_file.read_text()).values())):
        _stop_group(pid)
    pids_file.unlink()
    print("control plane stopped")


if __name__ == "__main__":
    commands = {"up": up, "down": down}
    if len(sys.argv) != 2 or sys.argv[1] not in commands:
        sys.exit("usage: python -m tests.k8s.controlplane up|down")
    commands[sys.argv[1]]()
