"""Importing this module starts traincheck in this process and every process it starts."""

from traincheck_core.bootstrap import start_from_env

start_from_env()
