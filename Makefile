# magent2 — the README's commands call these targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
export PATH := $(CURDIR)/.tools/bin:$(PATH)

.PHONY: help run test test-fast bench lint fmt deps system-deps tools k8s-up k8s-down e2e-kind clean \
	node-deps node-images node-up node-down e2e-node

help: ## list targets
	@grep -E '^[a-z0-9-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(VENV)/.runtime: pyproject.toml
	@echo "make: installing magent2 into $(VENV) (runtime only) ..."
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed: $(VENV)/.runtime
	@echo "make: installing the test tools and the operator extra into $(VENV) ..."
	$(PY) -m pip install -q -e '.[dev,operator,tui,litellm]' mcp-server-time
	touch $@

deps: $(VENV)/.installed ## Python virtualenv with magent2 and the test tools

system-deps: ## Debian packages the tests use (redis-server, valkey-server, curl)
	@bash hack/system-deps.sh

run: $(VENV)/.runtime ## local mode: gateway + DevAgent on http://localhost:$(PORT), no cluster, no Redis
	$(VENV)/bin/magent2 up --port $(PORT) $(if $(FILE),-f $(FILE))

test: deps system-deps tools node-images ## install everything the tests need, then run them all
	@echo "make: running the tests (unit, integration, e2e, faults, k8s, node) ..."
	$(PY) -m pytest

test-fast: deps system-deps ## the tests that need no Kubernetes control plane
	$(PY) -m pytest -m "not k8s and not node"

bench: deps system-deps tools ## benchmarks, printed as tables
	$(PY) -m bench
	$(PY) -m bench.streams
	$(PY) -m bench.llm
	$(PY) -m bench.wire
	$(PY) -m bench.operator

lint: deps ## ruff + mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

fmt: deps
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

tools: ## kube-apiserver, kube-controller-manager, etcd, kubectl, helm into .tools/bin (built once, cached)
	bash hack/tools.sh

k8s-up: tools deps ## a real control plane on loopback; kubeconfig at .tools/kubeconfig
	$(PY) -m tests.k8s.controlplane up

k8s-down: deps ## stop what k8s-up started
	$(PY) -m tests.k8s.controlplane down

node-deps: system-deps ## containerd, runc, CNI plugins, buildah, debootstrap; kubelet, kube-proxy, scheduler, CoreDNS
	@bash hack/node/system-deps.sh
	bash hack/tools.sh node

node-images: node-deps ## the chart's images built without Docker (debootstrap + buildah bud), cached by content
	bash hack/node/images.sh

node-up: deps node-images ## a real one-node cluster on this machine; kubeconfig at .tools/node/kubeconfig
	$(PY) -m tests.node.node up

node-down: deps ## stop what node-up started and put the host back as it was
	$(PY) -m tests.node.node down

e2e-node: deps node-images ## the chart, the images and Agents as real pods on a real node
	$(PY) -m pytest tests/node

e2e-kind: ## kind cluster + images + chart + one message (needs a Docker engine; says so and skips without)
	bash hack/e2e-kind.sh

clean:
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache
