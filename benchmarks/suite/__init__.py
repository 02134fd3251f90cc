"""The silent-bug benchmark harness: corpus discovery, command running, scoring, reports."""
