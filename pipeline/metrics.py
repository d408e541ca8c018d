"""What each function counts: CloudWatch metrics as embedded metric format (EMF) lines on stdout, no API call, and a
tally in the process, which the local stack's `GET /api/v1/metrics` serves.

A handler wrapped in `metered(service)` collects what `count` and `measure` record while it runs (in the handler or
in pipeline code it calls) and writes it when it returns: in namespace `JSync` (`POWERTOOLS_METRICS_NAMESPACE`),
with the `service` dimension (the function's Logger service name) and, deployed, `stage`. Outside a metered handler
(the API's process, a script, a test) only the tally counts.

The lines are written two ways:
- writer, committer, reconcile: Powertools' `EphemeralMetrics`, one per invocation. Not `Metrics`: it keeps its
  metrics in class attributes every instance in the process shares, and the local stack runs all the handlers on
  threads of one process, so a writer's flush would carry the committer's counts under the writer's service, with
  two threads writing one dict.
- ingest: by hand (`emf_line`). Ingest ships no Powertools (no layer: the standard library and the runtime's boto3),
  whose Metrics import would add ~85 ms to each cold start, and EMF is one documented JSON shape
  (`pipeline/refusals.py` writes `WebhookRefused` the same way).

A dimension beyond `service` belongs to its metric only (ingest's `reason` on `EventsRefused`): samples are grouped
by their dimensions and each group is its own line, so a dimension never spreads to the other metrics of a flush
(what Powertools' `add_dimension` would do). Stdlib only: ingest imports this.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any, ParamSpec, TypeVar

log = logging.getLogger(__name__)

COUNT = "Count"
MILLISECONDS = "Milliseconds"
UNMETERED = "jsync"  # the service a count made outside any metered handler is tallied under
_MAX_VALUES = 100  # EMF takes at most 100 values of one metric in one line

Dimensions = tuple[tuple[str, str], ...]
# dimensions -> (name, unit) -> values (a count is kept as one running sum)
Samples = dict[Dimensions, dict[tuple[str, str], list[float]]]
P = ParamSpec("P")
R = TypeVar("R")


def namespace() -> str:
    return os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "JSync"


def _with_stage(dimensions: Dimensions) -> Dimensions:
    """Deployed, every metric also carries its stage: dev and prod in one account must not share one graph."""
    stage = os.environ.get("JSYNC_STAGE", "").strip()
    return (("stage", stage), *dimensions) if stage else dimensions


class Tally:
    """Every metric recorded in this process since `since` (the local stack resets it when it starts)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._lock = threading.Lock()  # the local stack records from many threads
        self._clock = clock
        self.since = clock()
        self._counts: dict[tuple[str, str], float] = {}
        self._timings: dict[tuple[str, str], dict[str, float]] = {}

    def reset(self) -> None:
        with self._lock:
            self.since = self._clock()
            self._counts.clear()
            self._timings.clear()

    def add(self, service: str, name: str, unit: str, value: float, dimensions: Dimensions = ()) -> None:
        label = name + ("{" + ",".join(f"{k}={v}" for k, v in dimensions) + "}" if dimensions else "")
        with self._lock:
            if unit == COUNT:
                self._counts[(service, label)] = self._counts.get((service, label), 0.0) + value
                return
            held = self._timings.setdefault((service, label), {"samples": 0, "max": value, "last": value})
            held.update(samples=held["samples"] + 1, max=max(held["max"], value), last=value)

    def snapshot(self) -> dict[str, Any]:
        """`{"since", "counters": {service: {metric: total}}, "timings": {service: {metric: {samples, max, last}}}}`;
        a metric with dimensions is named `Name{key=value}`."""
        with self._lock:
            counters: dict[str, dict[str, float]] = {}
            for (service, label), total in sorted(self._counts.items()):
                counters.setdefault(service, {})[label] = total
            timings: dict[str, dict[str, dict[str, float]]] = {}
            for (service, label), held in sorted(self._timings.items()):
                timings.setdefault(service, {})[label] = dict(held)
            since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.since))
        return {"since": since, "counters": counters, "timings": timings}


tally = Tally()


class _Invocation:
    def __init__(self, service: str) -> None:
        self.service = service
        self.samples: Samples = {}


_current: ContextVar[_Invocation | None] = ContextVar("jsync_metrics", default=None)


def count(name: str, value: float = 1, dimensions: Mapping[str, str] | None = None) -> None:
    """Add `value` to the count `name` of the running handler (and of the process's tally)."""
    _record(name, COUNT, value, dimensions)


def measure(name: str, milliseconds: float) -> None:
    """One sample of the duration `name`."""
    _record(name, MILLISECONDS, milliseconds, None)


def _record(name: str, unit: str, value: float, dimensions: Mapping[str, str] | None) -> None:
    dims: Dimensions = tuple(sorted((dimensions or {}).items()))
    invocation = _current.get()
    tally.add(invocation.service if invocation else UNMETERED, name, unit, value, dims)
    if invocation is None:
        return
    values = invocation.samples.setdefault(dims, {}).setdefault((name, unit), [])
    if unit == COUNT and values:
        values[0] += value
    elif len(values) < _MAX_VALUES:
        values.append(value)


def metered(service: str, powertools: bool = True) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Collect the handler's metrics while it runs and write them as EMF when it returns or raises;
    `powertools=False` writes them by hand (ingest)."""

    def wrap(handler: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(handler)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            invocation = _Invocation(service)
            token = _current.set(invocation)
            try:
                return handler(*args, **kwargs)
            finally:
                _current.reset(token)
                if invocation.samples:
                    try:
                        (_write_powertools if powertools else write_lines)(service, invocation.samples)
                    except Exception:  # a metric never fails what it measures
                        log.warning("could not write metrics", exc_info=True)

        return run

    return wrap


def emf_line(
    service: str, metrics: Mapping[tuple[str, str], list[float]], dimensions: Dimensions = (), now: float | None = None
) -> str:
    """One EMF line: the metrics' values at the root, beside `service` and `dimensions`, and the directive naming
    them (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html)."""
    dimensions = _with_stage(dimensions)
    directive = {
        "Namespace": namespace(),
        "Dimensions": [["service", *(k for k, _ in dimensions)]],
        "Metrics": [{"Name": name, "Unit": unit} for name, unit in metrics],
    }
    at = time.time() if now is None else now
    line: dict[str, Any] = {"_aws": {"Timestamp": int(at * 1000), "CloudWatchMetrics": [directive]}, "service": service}
    line.update(dict(dimensions))
    for (name, _), values in metrics.items():
        line[name] = values[0] if len(values) == 1 else values
    return json.dumps(line, separators=(",", ":"))


def write_lines(service: str, samples: Samples) -> None:
    # One write per line, straight to stdout as Lambda takes it: a logging prefix would stop CloudWatch reading it.
    for dimensions, metrics in samples.items():
        sys.stdout.write(emf_line(service, metrics, dimensions) + "\n")
    sys.stdout.flush()


def _write_powertools(service: str, samples: Samples) -> None:
    from aws_lambda_powertools.metrics import EphemeralMetrics

    for dimensions, metrics in samples.items():
        emf = EphemeralMetrics(namespace=namespace(), service=service)
        for key, label in _with_stage(dimensions):
            emf.add_dimension(name=key, value=label)
        for (name, unit), values in metrics.items():
            for value in values:
                emf.add_metric(name=name, unit=unit, value=value)
        emf.flush_metrics()
