#!/usr/bin/env bash
# make e2e-kind: a kind cluster, the images, the chart, an example Agent, one message end to end.
# Needs a Docker engine; without one it says so and exits 0 without pretending to have run.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! docker info >/dev/null 2>&1; then
  echo "e2e-kind: no Docker engine on this machine; kind cannot run. Nothing was tested."
  exit 0
fi
KIND_VERSION=v0.33.0
export PATH="$PWD/.tools/bin:$PATH"
bash hack/tools.sh
[[ -x .tools/bin/kind ]] || GOBIN="$PWD/.tools/bin" go install "sigs.k8s.io/kind@$KIND_VERSION"
cluster=magent2-e2e
trap 'kind delete cluster --name "$cluster" >/dev/null 2>&1 || true; kill %1 2>/dev/null || true' EXIT
kind create cluster --name "$cluster" --wait 120s
docker build -f Dockerfile.worker --target worker -t magent2/magent2-worker:e2e .
docker build -f Dockerfile.gateway -t magent2/magent2-gateway:e2e .
kind load docker-image --name "$cluster" magent2/magent2-worker:e2e magent2/magent2-gateway:e2e
helm install magent2 charts/magent2 -n magent2 --create-namespace --wait --timeout 5m \
  --set operator.image.repository=magent2/magent2-worker --set operator.image.tag=e2e \
  --set operator.workerImage=magent2/magent2-worker:e2e \
  --set gateway.image.repository=magent2/magent2-gateway --set gateway.image.tag=e2e \
  --set 'agents[0].name=dev-agent' --set 'agents[0].spec.agentName=DevAgent'
kubectl -n magent2 wait --for=condition=Ready agent/dev-agent --timeout=180s
kubectl -n magent2 port-forward svc/magent2-gateway 18000:8000 >/dev/null &
sleep 3
curl -sf -X POST http://localhost:18000/send -H 'Content-Type: application/json' \
  -d '{"conversation_id": "e2e-1", "sender": "user:e2e", "recipient": "agent:DevAgent", "content": "hello"}'
reply=$(curl -sf --max-time 60 "http://localhost:18000/stream/e2e-1?max_events=5")
grep -q '"text":"echo: hello"' <<<"$reply" || { echo "e2e-kind: no output event:"; echo "$reply"; exit 1; }
echo "e2e-kind: passed"
