"""A demonstration worker: each interval it walks its items, beating per item."""
import logging
import time

log = logging.getLogger("demo")


def run(ctx):
    items = [str(i) for i in ctx.options["items"]]
    if ctx.handed_over:
        log.warning("predecessor was killed while on %s", ctx.handed_over.text())
    cycle = 0
    while True:
        started = time.monotonic()
        for item in items:
            ctx.beat("work", item)
            time.sleep(ctx.options["item_seconds"])
        cycle += 1
        duration = time.monotonic() - started
        ctx.cycle(True, duration, {"items": len(items)})
        log.info("cycle %d: %d items in %.2fs", cycle, len(items), duration)
        ctx.idle(max(0.0, ctx.interval - duration))
