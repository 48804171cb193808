"""``badbuzz worker`` with a bug planted: a batch holding a post whose text says "BUG"
fails with ZeroDivisionError (tests/failure/test_failures.py)."""
import sys

from stream import pipeline

_run = pipeline.Pipeline.run


async def run(self, batch):
    if any(m.value and b"BUG" in m.value for m in batch.messages):
        raise ZeroDivisionError("planted bug")
    return await _run(self, batch)


pipeline.Pipeline.run = run

if __name__ == "__main__":
    from badbuzz.cli import main

    sys.argv = ["badbuzz", "worker"]
    main()
