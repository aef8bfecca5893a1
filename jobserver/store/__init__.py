"""Durable job state and the append-only event log, behind one interface."""

from .protocol import NewJob, ProgressUpdate, Pruned, Store

__all__ = ["NewJob", "ProgressUpdate", "Pruned", "Store"]
