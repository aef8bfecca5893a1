"""Job-type modules the tests load with ``--jobs``, as a user's own package would be."""
