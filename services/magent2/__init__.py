"""magent2: a Kubernetes-native runtime for LLM agents on the OpenAI Agents SDK."""

__version__ = "0.1.0"
