"""CPU per log call: a line written (console, JSON), a call below LOG__LEVEL, binding the context.

A reply logs one INFO line (`link ok`, `post ok`...) at LOG__LEVEL=INFO, so what a written line costs is paid
once per message; a DEBUG call at INFO costs only the level check. Each figure is the best of `--repeat`
rounds of `--number` calls (timeit's advice: the minimum is what the code costs, the rest is the machine).
`--compare PATH` measures another `bot/logs.py` (e.g. the previous one, from `git show`) in the same
process, its rounds alternating with ours, so both see the same machine.

Run: .venv/bin/python bench/log_line.py [--number 20000] [--repeat 7] [--compare old_logs.py]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import logging
import time
from collections.abc import Callable
from types import ModuleType

SECRETS = ["123456:SECRET-TOKEN-abcdefghijklmnopqrstuvwxyz", "ed-token-0123456789", "salt-0123456789"]
FIELDS = {"action": "link", "target": "7301444403200000001", "backend": "ttsave", "outcome": "ok"}
log = logging.getLogger("tiktok_bot.flow")


def _load(path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location("compared_logs", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _timed(call: Callable[[], None], number: int) -> float:
    """Microseconds per call over `number` calls."""
    start = time.perf_counter()
    for _ in range(number):
        call()
    return (time.perf_counter() - start) / number * 1e6


def _round(logs: ModuleType, number: int) -> dict[str, float]:
    """One round of every case with this logs module installed."""
    # The call the flow makes once per reply: the bound context where there is one, the rest as extras.
    bound = hasattr(logs, "log_context")
    extra = {**FIELDS, "latency_ms": 41.7} if bound else {"platform": "telegram", "chat": 42, **FIELDS}
    figures: dict[str, float] = {}
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
            figures[f"INFO line, {fmt}"] = _timed(written, number)
    figures["DEBUG call at INFO"] = _timed(lambda: log.debug("x %s", 1), number)
    if bound:

        def bind() -> None:
            with logs.log_context(platform="telegram", update=90001, chat=42, user=7):
                pass

        figures["bind + restore 4 fields"] = _timed(bind, number)
    logging.getLogger().handlers.clear()
    return figures


def main() -> None:
    """Print µs per call for each case (and for the compared module)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--number", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--compare", metavar="PATH", help="another bot/logs.py to measure alongside")
    args = parser.parse_args()
    import bot.logs

    modules = {"now": bot.logs, **({"compared": _load(args.compare)} if args.compare else {})}
    best: dict[str, dict[str, float]] = {name: {} for name in modules}
    for _ in range(args.repeat):
        for name, module in modules.items():
            for case, figure in _round(module, args.number).items():
                best[name][case] = min(best[name].get(case, figure), figure)
    print(f"{'µs per call (best of ' + str(args.repeat) + ')':<28}" + "".join(f"{n:>10}" for n in modules))
    for case in best["now"]:
        print(f"{case:<28}" + "".join(f"{best[n].get(case, float('nan')):10.2f}" for n in modules))


if __name__ == "__main__":
    main()
