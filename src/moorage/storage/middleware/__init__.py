"""Drivers that wrap drivers: path checking, redirect switch, metrics (Distribution's storage middleware)."""
