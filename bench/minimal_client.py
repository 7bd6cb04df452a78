"""The baseline: the ~30-line script a user would write with csv, aiohttp and aiolimiter.

One session, a semaphore of 8, every row posted; a 429 is retried after ``Retry-After`` (without
that the script would drop most rows, and it would not be doing the job); no ledger, no resume.
``--limiter`` adds ``AsyncLimiter(3000, 60)``, the 50/s a user would configure; ``--limiter N/SECONDS``
sets another (``40/15`` for a server's 40 per 15 s). Its bucket starts empty, so it lets the first
rows through in a burst (NOTES.md, "Traps").  ``--concurrency N`` sizes the semaphore (a user who
knows the server is far away; the job's own default maximum is 64).

    python -m bench.minimal_client INPUT.csv URL [--limiter [N/SECONDS]] [--concurrency N]
    (key from $IDENTIFAI_API_KEY)

Prints ``{"status": count, ...}`` as JSON.
"""

from __future__ import annotations

import asyncio
import collections
import csv
import json
import os
import sys

import aiohttp
from aiolimiter import AsyncLimiter


async def main(
    rows: list[dict[str, str]], url: str, limiter: AsyncLimiter | None, concurrency: int = 8
) -> dict[int, int]:
    semaphore = asyncio.Semaphore(concurrency)
    headers = {"X-Api-Key": os.environ["IDENTIFAI_API_KEY"]}
    async with aiohttp.ClientSession(headers=headers) as session:

        async def post(row: dict[str, str]) -> int:
            async with semaphore:
                for _ in range(100):  # bounded: a row that never gets through ends as 429
                    if limiter is not None:
                        await limiter.acquire()
                    endpoint = f"{url}/api/classification_video/{row['hash']}/override"
                    async with session.post(endpoint, json={"classification": row["classification"]}) as r:
                        await r.read()
                        if r.status != 429:
                            return r.status
                        await asyncio.sleep(float(r.headers.get("Retry-After", "1")))
                return 429

        statuses = await asyncio.gather(*(post(row) for row in rows))
    return dict(collections.Counter(statuses))


if __name__ == "__main__":
    with open(sys.argv[1], newline="", encoding="utf-8") as fh:
        corrections = list(csv.DictReader(fh))
    args, limit = sys.argv[3:], None
    if "--limiter" in args:
        after = args[args.index("--limiter") + 1 :]
        count, period = (after[0] if after and "/" in after[0] else "3000/60").split("/")
        limit = AsyncLimiter(int(count), float(period))
    in_flight = int(args[args.index("--concurrency") + 1]) if "--concurrency" in args else 8
    print(json.dumps(asyncio.run(main(corrections, sys.argv[2], limit, in_flight))))
