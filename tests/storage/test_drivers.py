"""Runs the shared driver suite on every driver of the ``driver`` fixture."""

from tests.storage.driver_suite import *
