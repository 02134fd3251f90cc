"""Reports of a check: terminal summary, self-contained HTML, diagnosis of violations."""

from .diagnosis import Diagnosis, diagnose
from .html import render_html, timeline_svg
from .load import load_run_result, result_from_violations, with_invariants
from .terminal import format_summary

__all__ = ["Diagnosis", "diagnose", "format_summary", "load_run_result", "render_html",
           "result_from_violations", "timeline_svg", "with_invariants"]
