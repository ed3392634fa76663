"""What ``rkit migrate APP NAME`` shows: a live progress line (processed, rate,
ETA) while a migration runs, then a final summary (the runner's report)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import TextIO

from .component import Migrations
from .types import RESUME, MigrationError, MigrationStatus

BAR = 30


def progress_line(processed: int, total: int | None, rate: float | None) -> str:
    """``[#####.....]  45,000/100,000  45%  12,345 items/s  ETA 4s``"""
    parts = []
    if total:
        frac = min(1.0, processed / total)
        fill = int(frac * BAR)
        parts.append(f"[{'#' * fill}{'.' * (BAR - fill)}] {processed:,}/{total:,} {frac:4.0%}")
    else:
        parts.append(f"{processed:,} items")
    if rate:
        parts.append(f"{rate:,.0f} items/s")
        if total and processed < total:
            parts.append(f"ETA {max(0.0, (total - processed) / rate):,.0f}s")
    return "  ".join(parts)


async def migrate_command(
    m: Migrations,
    name: str,
    *,
    dry_run: bool = False,
    reset: bool = False,
    batch_size: int | None = None,
    here: bool = False,
    interval: float = 0.5,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run (or dry-run) ``name`` and follow it to the end; the exit code: 0 done,
    canceled or dry run; 1 failed or refused."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        if dry_run:
            report = await m.run(name, dry_run=True, batch_size=batch_size, reset=reset)
            print(json.dumps(report, indent=2, default=str), file=out)
            return 1 if report["Status"].startswith("DRY RUN: Migration failed") else 0
        total = await m.get(name).source.estimate_total()
        t0 = time.monotonic()

        def show(st: MigrationStatus) -> None:
            elapsed = time.monotonic() - t0
            rate = st.processed / elapsed if elapsed > 0 and st.processed else None
            print("\r" + progress_line(st.processed, total, rate), end="", file=err, flush=True)

        if here:
            await m.run_to_completion(
                name, batch_size=batch_size, cursor=None if reset else RESUME, on_batch=show
            )
            report = await m.run(name)
        else:
            report = await m.run(name, batch_size=batch_size, reset=reset)
            st = await m.status(name)
            while st.state == "inProgress":
                show(st)
                await asyncio.sleep(interval)
                st = await m.status(name)
            report = await m.run(name) if st.state == "success" else report
            report["processed"] = st.processed
            if st.state != "success":
                report["Status"] = {
                    "failed": f"Migration failed: {st.error}",
                    "canceled": "Migration is canceled.",
                }.get(st.state, f"Migration state {st.state}.")
        final = await m.status(name)
        show(final)
        print(file=err)
        print(json.dumps(report, indent=2, default=str), file=out)
        return 1 if final.state == "failed" else 0
    except (MigrationError, ValueError) as exc:
        print(f"rkit migrate: {exc}", file=err)
        return 1
