"""traincheck core: catch silent errors in deep-learning training.

The public API for users and plugin authors. Everything not listed in ``__all__`` is private
and may change without notice.
"""

__version__ = "0.1.0"

from .config import Config, load_config  # noqa: E402
from .errors import (  # noqa: E402
    InvariantFileError,
    PluginError,
    TraceCorruptError,
    TraincheckError,
    UsageError,
    ViolationError,
)
from .events import (  # noqa: E402
    SCHEMA_VERSION,
    CallError,
    CallReturn,
    CallStart,
    Event,
    Footer,
    Header,
    MapSummary,
    MetaUpdate,
    ObjSummary,
    Scalar,
    SeqSummary,
    Summary,
    TensorSummary,
    VarState,
)
from .meta import MetaTracker, with_meta  # noqa: E402
from .plugins import hookimpl  # noqa: E402
from .session import InstrumentationPlan, Session, annotate, get_session, start_session  # noqa: E402
from .summary import fingerprint_bytes, type_name  # noqa: E402
from .trace import Record, TraceFile, TraceWriter, iter_run, read_header  # noqa: E402

__all__ = [
    "SCHEMA_VERSION",
    "CallError",
    "CallReturn",
    "CallStart",
    "Config",
    "Event",
    "Footer",
    "Header",
    "InstrumentationPlan",
    "InvariantFileError",
    "MapSummary",
    "MetaTracker",
    "MetaUpdate",
    "ObjSummary",
    "PluginError",
    "Record",
    "Scalar",
    "SeqSummary",
    "Session",
    "Summary",
    "TensorSummary",
    "TraceCorruptError",
    "TraceFile",
    "TraceWriter",
    "TraincheckError",
    "UsageError",
    "VarState",
    "ViolationError",
    "__version__",
    "annotate",
    "fingerprint_bytes",
    "get_session",
    "hookimpl",
    "iter_run",
    "load_config",
    "read_header",
    "start_session",
    "type_name",
    "with_meta",
]
