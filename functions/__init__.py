"""Thin Lambda entry points: parse the event, call `pipeline`, shape the response."""
