"""jobserver: a self-hosted job server that streams each job's progress live."""

__version__ = "0.1.0"
