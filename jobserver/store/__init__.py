"""Durable job state and the append-only event log, behind one interface."""

from .protocol import NewJob, ProgressUpdate, Store

__all__ = ["NewJob", "ProgressUpdate", "Store"]
