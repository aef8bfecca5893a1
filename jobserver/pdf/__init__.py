"""PDF to notes: upload storage, parsing in worker processes, notes generation, the job type."""
