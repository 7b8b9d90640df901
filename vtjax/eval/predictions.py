"""Resumable predictions file: one JSON object per line, keyed by record id.

`PredictionStore(path)` reads what an earlier (possibly killed) run wrote,
and `add` appends one line per finished record, flushed at once, so a rerun
skips the ids in `done_ids()`. A last line cut off mid-write (no newline or
not valid JSON) is dropped and the file truncated back to the last complete
line; a bad line anywhere else is an error. An id already in the store is
not written again. Only one process should write a store (on a pod: process 0).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator


class PredictionStore:
    """Append-only JSONL of {"id": ..., "output": ..., ...} rows."""

    def __init__(self, path: str):
        self.path = os.fspath(path)
        self._rows: dict[str, dict] = {}
        self.dropped_partial_line = False
        if os.path.exists(self.path):
            self._load()

    def _load(self) -> None:
        with open(self.path, "rb") as f:
            data = f.read()
        pos = good_end = line_no = 0
        while pos < len(data):
            nl = data.find(b"\n", pos)
            end = len(data) if nl < 0 else nl + 1
            raw, line_no = data[pos:end], line_no + 1
            if raw.strip():
                try:
                    row = json.loads(raw)
                    if not isinstance(row, dict) or "id" not in row:
                        raise ValueError("not a JSON object with an 'id'")
                except ValueError as e:
                    if not data[end:].strip():  # the last line: a write that was cut off
                        self.dropped_partial_line = True
                        break
                    raise ValueError(
                        f"{self.path}:{line_no}: unreadable prediction line ({e}); fix or delete it and rerun."
                    ) from e
                self._rows.setdefault(str(row["id"]), row)
            good_end = pos = end
        if self.dropped_partial_line or (data and not data[:good_end].endswith(b"\n")):
            with open(self.path, "r+b") as f:
                f.truncate(good_end)
                if good_end and not data[:good_end].endswith(b"\n"):
                    f.seek(good_end)
                    f.write(b"\n")  # a complete last row without its newline

    def done_ids(self) -> set[str]:
        """Ids with a stored prediction."""
        return set(self._rows)

    def pending(self, items: Iterable, key: str = "id") -> list:
        """The items (dicts with `key`, or objects with `uid`) that have no prediction yet, in order."""
        out = []
        for it in items:
            uid = str(it[key]) if isinstance(it, dict) else str(it.uid)
            if uid not in self._rows:
                out.append(it)
        return out

    def add(self, uid: str, output: str, **fields) -> bool:
        """Appends one prediction (flushed and fsynced); False if `uid` is already stored."""
        uid = str(uid)
        if uid in self._rows:
            return False
        row = {"id": uid, "output": output, **fields}
        line = json.dumps(row, ensure_ascii=False) + "\n"
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        self._rows[uid] = row
        return True

    def outputs(self) -> dict[str, str]:
        """{id: output text}."""
        return {k: v["output"] for k, v in self._rows.items()}

    def rows(self) -> list[dict]:
        return list(self._rows.values())

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[dict]:
        return iter(self._rows.values())
