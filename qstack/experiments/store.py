"""The store of finished tasks: append-only JSON lines, crash-safe.

One line per event, each ``{"sum": <sha256 of the body>, "body": {...}}``
written with one ``write`` and ``fsync``'d before the task counts as done:

* ``{"kind": "task", ...}``: a finished task (:func:`~.tasks.make_record`:
  its metrics, or the error it raised);
* ``{"kind": "lost", "key": ..., "why": ...}``: a task whose worker died (killed,
  crashed) before it answered; it is run again.

Reading keeps the last good ``task`` line of each key. A line that does not
parse or whose checksum does not match (a crash in the middle of a write, a
disk that lied) is skipped and counted; a last line without its newline is
cut off before anything is appended, so the next record starts on its own
line. A rerun therefore redoes exactly the tasks with no good record.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

__all__ = ["TaskStore"]


def _checksum(body_text: str) -> str:
    return hashlib.sha256(body_text.encode()).hexdigest()


class TaskStore:
    """The task records of one output directory (``tasks.jsonl``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.records: dict[str, dict] = {}
        self.lost: dict[str, int] = {}
        self.bad_lines = 0
        self._fh: Any = None
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):                  # a half-written last record: cut it off
            self.bad_lines += 1
            with open(self.path, "r+b") as fh:
                fh.truncate(end)
                os.fsync(fh.fileno())
            data = data[:end]
        for raw in data.splitlines():
            body = self._parse(raw)
            if body is None:
                self.bad_lines += 1
                continue
            if body.get("kind") == "task":
                self.records[body["key"]] = body
            elif body.get("kind") == "lost":
                self.lost[body["key"]] = self.lost.get(body["key"], 0) + 1

    @staticmethod
    def _parse(raw: bytes) -> dict | None:
        try:
            line = json.loads(raw)
            text = json.dumps(line["body"], sort_keys=True, separators=(",", ":"))
            if line["sum"] != _checksum(text):
                return None
            body = line["body"]
            return body if isinstance(body, dict) and isinstance(body.get("key"), str) else None
        except (ValueError, KeyError, TypeError):
            return None

    def _append(self, body: dict) -> None:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "ab")
        text = json.dumps(body, sort_keys=True, separators=(",", ":"))
        line = json.dumps({"sum": _checksum(text), "body": body}, sort_keys=True,
                          separators=(",", ":"))
        self._fh.write(line.encode() + b"\n")      # one write: the line or a torn tail
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def add(self, record: dict) -> None:
        """Store a finished task's record (durably, before returning)."""
        body = dict(record, kind="task")
        self._append(body)
        self.records[body["key"]] = body

    def add_lost(self, key: str, why: str) -> int:
        """Record that ``key``'s worker died; returns how often that happened."""
        self._append({"kind": "lost", "key": key, "why": why})
        self.lost[key] = self.lost.get(key, 0) + 1
        return self.lost[key]

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> "TaskStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
