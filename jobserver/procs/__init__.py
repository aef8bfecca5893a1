"""The worker processes: CPU-bound job types and the PDF parser run here (see pool.py)."""
