"""The magent2 operator: Agent resources reconciled into worker Deployments (Kopf)."""

GROUP = "magent2.dev"
VERSION = "v1alpha1"
PLURAL = "agents"
KIND = "Agent"
