"""moto keeps S3 and SQS in memory: save them under $JSYNC_HOME on stop, put them back on start."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote


class StateDir:
    """`state/s3/<bucket>/<quoted key>` files plus a manifest; `state/sqs.jsonl` for queued messages."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.s3_dir = root / "s3"
        self.manifest = root / "s3-manifest.json"
        self.queues_file = root / "sqs.jsonl"

    def save_bucket(self, s3: Any, bucket: str) -> int:
        """Write objects that changed since the last save; drop files whose objects are gone. Returns files written."""
        known: dict[str, dict[str, str]] = json.loads(self.manifest.read_text()) if self.manifest.exists() else {}
        seen: dict[str, dict[str, str]] = {}
        written = 0
        target = self.s3_dir / bucket
        target.mkdir(parents=True, exist_ok=True)
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                key, etag = item["Key"], item["ETag"]
                entry = known.get(key)
                if entry and entry["etag"] == etag:
                    seen[key] = entry
                    continue
                obj = s3.get_object(Bucket=bucket, Key=key)
                _atomic_write(target / quote(key, safe=""), obj["Body"].read())
                seen[key] = {"etag": etag, "content_type": obj.get("ContentType", "application/octet-stream")}
                written += 1
        for key in set(known) - set(seen):
            (target / quote(key, safe="")).unlink(missing_ok=True)
        _atomic_write(self.manifest, json.dumps(seen).encode())
        return written

    def restore_bucket(self, s3: Any, bucket: str) -> int:
        if not self.manifest.exists():
            return 0
        manifest: dict[str, dict[str, str]] = json.loads(self.manifest.read_text())
        for key, entry in manifest.items():
            path = self.s3_dir / bucket / quote(key, safe="")
            if path.exists():
                s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes(), ContentType=entry["content_type"])
        # ETags of restored objects match (same bytes, single-part), so the manifest stays valid.
        return len(manifest)

    def save_queues(self, sqs: Any, queue_names: list[str]) -> int:
        """Move every message out of the queues into the file, group and dedup ids kept, order kept per group."""
        count = 0
        self.root.mkdir(parents=True, exist_ok=True)
        with self.queues_file.open("a", encoding="utf-8") as out:
            for name in queue_names:
                url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
                while True:
                    messages = sqs.receive_message(
                        QueueUrl=url,
                        MaxNumberOfMessages=10,
                        VisibilityTimeout=60,
                        AttributeNames=["All"],
                        MessageSystemAttributeNames=["All"],
                    ).get("Messages", [])
                    if not messages:
                        break
                    for m in messages:
                        attrs = m.get("Attributes", {})
                        line = {
                            "queue": name,
                            "body": m["Body"],
                            "group": attrs.get("MessageGroupId"),
                            "dedup": attrs.get("MessageDeduplicationId"),
                            "receives": int(attrs.get("ApproximateReceiveCount", 0)),
                        }
                        out.write(json.dumps(line) + "\n")
                    out.flush()
                    os.fsync(out.fileno())  # on disk before it leaves the queue
                    sqs.delete_message_batch(
                        QueueUrl=url,
                        Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
                    )
                    count += len(messages)
        return count

    def restore_queues(self, sqs: Any) -> int:
        if not self.queues_file.exists():
            return 0
        count = 0
        urls: dict[str, str] = {}
        for line in self.queues_file.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            m = json.loads(line)
            url = urls.get(m["queue"]) or urls.setdefault(
                m["queue"], sqs.get_queue_url(QueueName=m["queue"])["QueueUrl"]
            )
            sqs.send_message(
                QueueUrl=url, MessageBody=m["body"], MessageGroupId=m["group"], MessageDeduplicationId=m["dedup"]
            )
            count += 1
        self.queues_file.unlink()
        return count


def _atomic_write(path: Path, data: bytes) -> None:
    # A name of its own per writer: the background save and the final save may overlap.
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
