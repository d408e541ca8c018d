"""`make redrive`: move every message in the dead-letter queues back to its source queue, keeping message groups.

The queues: events, commits and sync (reconcile jobs), each with its dead-letter queue. Events the writer set
aside as unreadable (`index/unreadable/`) go back to the events queue too, so a fixed writer takes them.

How the messages move is the backend's business (`QueueBus.redrive`): an SQS message move task on AWS, a copy
in group order on moto, one transaction on the embedded backend (which works whether `make run` is up or not).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from pipeline import services
from pipeline.backends import UNAVAILABLE, QueueBus, RedriveError
from pipeline.messages import QueuedEvent
from pipeline.queues import Queues
from pipeline.settings import Settings, get_settings
from pipeline.store import UNREADABLE_PREFIX, Store


class NoLocalStack(Exception):
    """No local stack has kept state under $JSYNC_HOME."""


@dataclass(frozen=True)
class Pair:
    """A dead-letter queue and the source queue its messages go back to."""

    dlq: str
    source: str


_FAILED: tuple[type[Exception], ...] = (RedriveError, *UNAVAILABLE)


def pairs(settings: Settings) -> list[Pair]:
    return [Pair(dlq, source) for source, dlq in settings.queue_pairs]


def redrive_all(bus: QueueBus, queue_pairs: Sequence[Pair]) -> dict[str, int]:
    """Redrive every pair, even after one fails; raises RedriveError naming every failure at the end."""
    moved: dict[str, int] = {}
    failures: list[str] = []
    for pair in queue_pairs:
        try:
            moved[pair.dlq] = bus.redrive(pair.dlq, pair.source)
        except RedriveError as exc:
            failures.append(str(exc))
            continue
        print(
            f"moved {moved[pair.dlq]} from {pair.dlq} to {pair.source}"
            if moved[pair.dlq]
            else f"{pair.dlq} is empty; nothing to move",
            flush=True,
        )
    if failures:
        raise RedriveError("; ".join(failures))
    return moved


# --- events the writer set aside -----------------------------------------------------------------------------------
def retry_set_aside(store: Store, queues: Queues) -> int:
    """Queue every event the writer set aside again, then forget the record (the writer makes a new one if it
    still cannot read it); returns how many were queued."""
    retried = 0
    for key in store.all_keys(UNREADABLE_PREFIX):
        found = store.read_json(key)
        if found is None:
            continue
        record = found.data
        queued = QueuedEvent.from_json(json.dumps(record["event"]))
        # Its own deduplication id: within SQS's 5 minutes the event id alone would be dropped as a duplicate.
        retry_id = hashlib.sha256(f"{queued.event_id}:retry:{record.get('set_aside_at')}".encode()).hexdigest()
        queues.send_event(queued, str(record.get("issue_id") or "unreadable"), dedup_id=retry_id)
        store.delete(key)
        retried += 1
    return retried


def stage_bucket(stage: str) -> str | None:
    """The deployed stage's bucket (CloudFormation names it), from the stack's `BucketName` output."""
    try:
        stacks = services.aws("cloudformation").describe_stacks(StackName=f"jsync-{stage}")["Stacks"]
    except (ClientError, BotoCoreError):
        return None
    outputs = {o["OutputKey"]: o["OutputValue"] for s in stacks for o in s.get("Outputs", [])}
    return outputs.get("BucketName")


def _retry_set_aside_of(stage: str | None) -> int | None:
    """`retry_set_aside` on the local stack, or on a deployed stage's bucket; None if that bucket cannot be found."""
    if stage and not os.environ.get("JSYNC_BUCKET"):
        bucket = stage_bucket(stage)
        if bucket is None:
            return None
        os.environ["JSYNC_BUCKET"] = bucket
        services.reset()
    return retry_set_aside(services.store(), services.queues())


# --- command line ------------------------------------------------------------------------------------------------
def check_local_state(settings: Settings) -> None:
    """The embedded backend keeps its queues in `$JSYNC_HOME/jsync.db`; without it there is nothing to redrive."""
    if settings.backend == "embedded" and not settings.database.is_file():
        raise NoLocalStack(
            f"no local stack state under {settings.home}; start it with `make run`, or pass STAGE=name for AWS"
        )


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pipeline.redrive", description=__doc__.splitlines()[0])
    parser.add_argument("--stage", help="deployed stage to redrive on AWS (default: the running local stack)")
    parser.add_argument("--dry-run", action="store_true", help="only say how many messages each DLQ holds")
    return parser.parse_args(list(argv))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.stage:
        os.environ["JSYNC_STAGE"] = args.stage
        os.environ["JSYNC_BACKEND"] = "aws"
    try:
        services.reset()
        settings = get_settings()
        check_local_state(settings)
        bus, queue_pairs = services.queue_bus(), pairs(settings)
        deployed = settings.backend == "aws" and not settings.aws_endpoint_url
        if args.dry_run:
            for pair in queue_pairs:
                print(f"would move {bus.depth(pair.dlq).waiting} from {pair.dlq} to {pair.source}")
            if not deployed:
                print(f"would queue again {len(services.store().all_keys(UNREADABLE_PREFIX))} set-aside events")
            return 0
        moved = redrive_all(bus, queue_pairs)
        if moved.get(settings.commits_dlq):
            services.queues().ring()  # the committer drains them now rather than at the schedule's next bell
        retried = _retry_set_aside_of(args.stage if deployed else None)
        if retried is None:
            print("redrive: could not read the stack's BucketName output; events set aside were left", file=sys.stderr)
        elif retried:
            print(f"queued again {retried} events the writer had set aside as unreadable")
    except NoLocalStack as exc:
        print(f"redrive: {exc}", file=sys.stderr)
        return 2
    except EndpointConnectionError as exc:
        print(f"redrive: nothing answers at {exc.kwargs.get('endpoint_url')}; is the stack running?", file=sys.stderr)
        return 1
    except _FAILED as exc:
        print(f"redrive: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # A move task keeps going on AWS; a copy stopped mid-message has at worst duplicated that one message.
        print(
            "redrive: interrupted; a started move task keeps going, anything else is left for a rerun", file=sys.stderr
        )
        return 130
    finally:
        services.reset()
    print(f"done: {sum(moved.values())} messages moved")
    return 0


if __name__ == "__main__":
    sys.exit(main())
