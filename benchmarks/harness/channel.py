"""A worker's line to the parent: result messages as JSON lines on an inherited pipe, and the turn
it holds while it works (given on stdin, handed back after each window of steps)."""

from __future__ import annotations

import json
import os
import sys
import time


class Channel:
    """Messages to the parent, one JSON object per line, flushed as they happen; and the turn.

    In a job of several processes only the one that `leads` streams its progress and hands the
    turn on; the others start with the group's first turn, then keep pace through the engine's
    collectives, and send their result alone."""

    def __init__(self, fd: int, leads: bool = True):
        self.stream = os.fdopen(fd, "w", buffering=1)
        self.leads = leads
        self.waited_s = 0.0  # time spent waiting while other processes held the turn

    def send(self, kind: str, **fields) -> None:
        if self.leads or kind == "result":
            self.stream.write(json.dumps({"type": kind, **fields}, default=float) + "\n")

    @staticmethod
    def wait_for_turn() -> None:
        sys.stdin.readline()  # blocks until the parent gives the turn

    def hand_on_turn(self) -> None:
        if self.leads:
            self.send("yield")
            start = time.perf_counter()
            self.wait_for_turn()
            self.waited_s += time.perf_counter() - start
