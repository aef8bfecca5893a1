"""A job-type module that fails to import (a typo in its own import)."""

from __future__ import annotations

import jobserver_does_not_exist  # noqa: F401
