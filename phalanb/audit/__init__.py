"""Audits: bundles (record, save, load, re-verify), batch audits and their fast path, and the online evidence an audit stores."""
