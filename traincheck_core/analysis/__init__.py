"""Turn a raw event stream into analysis records that inference and checking share.

One incremental :class:`Assembler` serves both: inference feeds it whole traces, the online
checker feeds it events as they are emitted. It pairs call starts with their ends, attaches
the variable changes that happened across each call, and tracks meta variables and the last
known state of every variable per process.
"""

from .assembler import Assembler, CallRecord, ProcInfo, StepEnd, VarChange

__all__ = ["Assembler", "CallRecord", "ProcInfo", "StepEnd", "VarChange"]
