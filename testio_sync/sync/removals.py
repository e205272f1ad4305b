"""The removal guard: an empty or much shorter list never empties the mirror by itself.

An API glitch (a 200 with ``[]``, a token whose access narrowed for a moment)
looks exactly like a mass deletion upstream. So a list with nothing in it never
removes anything, and a removal of more than ``max_removal_share`` of what is
stored waits for a forced sync to confirm it. A refused removal is an error of
the run (it ends ``partial``) whose message says how to confirm.
"""

from __future__ import annotations

from testio_sync.sync.context import RunContext


def removal_refused(
    ctx: RunContext, *, what: str, removing: int, stored: int, listed: int, product_id: int = 0
) -> bool:
    """True, with the run's error recorded, when ``removing`` of ``stored`` rows must stay.

    ``listed`` is how many the API listed; ``product_id`` names the product whose
    tests they are (0: the product list itself).
    """
    if removing == 0:
        return False
    where = f"Product {product_id}" if product_id else "Product list"
    if listed == 0:
        scope = f" --product-ids {product_id}" if product_id else ""
        ctx.error(
            f"{where}: the API listed no {what}, yet {stored} are stored; nothing was removed "
            "(an empty list is never taken for a deletion). If they are really gone, "
            f"`testio-sync sync --nuke{scope}` resyncs from scratch."
        )
        return True
    share = ctx.settings.max_removal_share
    options = ctx.request.options
    if removing <= share * stored or options.force_refresh or options.nuke:
        return False
    ctx.error(
        f"{where}: {removing} of {stored} stored {what} are no longer listed upstream, more "
        f"than {share:.0%} (TESTIO_MAX_REMOVAL_SHARE); nothing was removed. If they are "
        "really gone, confirm with a forced sync (`testio-sync sync --force`, or sync_data "
        "with force)."
    )
    return True
