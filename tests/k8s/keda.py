"""KEDA's CRDs for the tests, from the Go module proxy (the kedacore/keda module ships them), cached
in the Go module cache. Version pinned here."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

KEDA_VERSION = "v2.21.0"
CRDS = ("keda.sh_scaledobjects.yaml", "keda.sh_triggerauthentications.yaml")


def keda_module() -> Path:
    """The kedacore/keda module's source (its `config/` has the CRDs and the deployment)."""
    found = subprocess.run(
        ["go", "mod", "download", "-json", f"github.com/kedacore/keda/v2@{KEDA_VERSION}"],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return Path(json.loads(found.stdout)["Dir"])


def keda_crds() -> list[Path]:
    bases = keda_module() / "config" / "crd" / "bases"
    return [bases / name for name in CRDS]
