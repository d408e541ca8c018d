"""Operator commands behind `make package` and `make deploy`."""
