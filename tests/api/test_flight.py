"""Single flight: a run started after `forget` stays shared when the run before it ends."""

from __future__ import annotations

import asyncio

from api.flight import SingleFlight


def test_a_run_started_after_forget_is_still_shared_when_the_earlier_run_lands() -> None:
    async def scenario() -> None:
        flights: SingleFlight[str, int] = SingleFlight()
        release = [asyncio.Event(), asyncio.Event()]
        runs = 0

        async def work() -> int:
            nonlocal runs
            runs += 1
            mine = runs
            await release[mine - 1].wait()
            return mine

        first = asyncio.ensure_future(flights.run("k", work))
        await asyncio.sleep(0)
        flights.forget("k")
        second = asyncio.ensure_future(flights.run("k", work))
        await asyncio.sleep(0)
        release[0].set()
        assert await first == 1
        third = asyncio.ensure_future(flights.run("k", work))  # joins the second run, not a run of its own
        await asyncio.sleep(0)
        release[1].set()
        assert (await second, await third) == (2, 2)
        assert runs == 2

    asyncio.run(scenario())
