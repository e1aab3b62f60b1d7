"""A real `prmedic worker` process whose review pipeline leaves traces in a file.

Run as: python worker_process.py TRACE_FILE SLEEP_SECONDS_ON_FIRST_ATTEMPT
Settings come from the environment, as for `prmedic worker`.
"""

import asyncio
import sys
from pathlib import Path

from app.pipelines import JobContext
from app.runtime import work
from app.settings import load_settings

trace = Path(sys.argv[1])
first_attempt_sleep = float(sys.argv[2])


async def review(ctx: JobContext) -> dict:
    with trace.open("a") as f:
        f.write(f"start {ctx.job.id} attempt {ctx.job.attempts}\n")
    if ctx.job.attempts == 1:
        await asyncio.sleep(first_attempt_sleep)
    with trace.open("a") as f:
        f.write(f"done {ctx.job.id}\n")
    return {"posted": True}


asyncio.run(work(load_settings(), pipelines={"review": review}))
