"""Worked examples of jobserver job types (see docs/job-types.md)."""
