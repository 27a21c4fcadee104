"""CPU per log call: a line written (console, JSON), a call below LOG__LEVEL, binding the context.

A reply logs one INFO line (`link ok`, `post ok`...) at LOG__LEVEL=INFO, so what a written line costs is paid
once per message; a DEBUG call at INFO costs only the level check. Each figure is the best of `--repeat`
rounds of `--number` calls (timeit's advice: the minimum is what the code costs, the rest is the machine).
`BENCH_LOGS` names another `bot/logs.py` to compare (e.g. the previous version from `git show`).

Run: .venv/bin/python bench/log_line.py [--number 20000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import logging
import os
import sys
import timeit
from types import ModuleType

SECRETS = ["123456:SECRET-TOKEN-abcdefghijklmnopqrstuvwxyz", "ed-token-0123456789", "salt-0123456789"]


def _logs_module() -> ModuleType:
    path = os.environ.get("BENCH_LOGS")
    if not path:
        import bot.logs

        return bot.logs
    spec = importlib.util.spec_from_file_location("bench_logs", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _per_call(stmt: object, number: int, repeat: int) -> float:
    """Microseconds per call, the best round."""
    return min(timeit.repeat(stmt, number=number, repeat=repeat)) / number * 1e6  # type: ignore[arg-type]


def main() -> None:
    """Print µs per call for each case."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--number", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    logs = _logs_module()
    log = logging.getLogger("tiktok_bot.flow")
    fields = {"action": "link", "target": "7301444403200000001", "backend": "ttsave", "outcome": "ok"}
    # The call the flow makes once per reply: the bound context where there is one, the rest as extras.
    bound = hasattr(logs, "shared_processors")
    extra = {**fields, "latency_ms": 41.7} if bound else {"platform": "telegram", "chat": 42, **fields}
    print(f"{'case':<28} {'µs/call':>8}  ({'structlog' if bound else 'stdlib formatters'})")
    for fmt in ("console", "json"):
        sink = io.StringIO()
        with contextlib.redirect_stderr(sink):
            logs.setup_logging("INFO", fmt, SECRETS)

        def written(sink: io.StringIO = sink) -> None:
            log.info("%s %s", "link", "ok", extra=extra)
            sink.seek(0)
            sink.truncate()

        context: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
        if bound:
            context = logs.log_context(platform="telegram", update=90001, chat=42, user=7)
        with context:
            print(f"{'INFO line, ' + fmt:<28} {_per_call(written, args.number, args.repeat):8.1f}")
    below = _per_call(lambda: log.debug("x %s", 1), args.number * 10, args.repeat)
    print(f"{'DEBUG call at INFO':<28} {below:8.2f}")
    if bound:
        from structlog.contextvars import bound_contextvars

        def bind() -> None:
            with logs.log_context(platform="telegram", update=90001, chat=42, user=7):
                pass

        def bind_structlog() -> None:
            with bound_contextvars(platform="telegram", update=90001, chat=42, user=7):
                pass

        for name, call in (("log_context, 4 fields", bind), ("bound_contextvars, 4 fields", bind_structlog)):
            print(f"{name:<28} {_per_call(call, args.number, args.repeat):8.2f}")
    logging.getLogger().handlers.clear()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
