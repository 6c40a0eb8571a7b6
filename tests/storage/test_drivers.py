"""Runs the shared driver suite on every driver of the ``driver`` fixture."""

from tests.storage.driver_suite import *  # noqa: F403 - the suite is collected here on purpose
