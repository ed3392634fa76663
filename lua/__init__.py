"""Lua scripts shipped with rkit (mapped from the top-level lua/ directory)."""
