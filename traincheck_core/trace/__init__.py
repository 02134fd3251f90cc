"""Trace files: length-prefixed msgpack frames, one file per process, append-only."""

from .format import MAGIC, SUFFIX, trace_file_name
from .reader import Record, TraceFile, iter_run, read_header, trace_files
from .writer import TraceWriter

__all__ = [
    "MAGIC",
    "SUFFIX",
    "Record",
    "TraceFile",
    "TraceWriter",
    "iter_run",
    "read_header",
    "trace_file_name",
    "trace_files",
]
