"""The start-up check of the configured OpenAI models against ``GET /v1/models``."""

from __future__ import annotations

import datetime as dt
import logging

import openai

from gen_common.errors import PermanentError

log = logging.getLogger(__name__)


async def check_models(
    client: openai.AsyncOpenAI,
    names: list[str],
    *,
    refuse_retired: bool = True,
    today: dt.date | None = None,
) -> dict[str, str | None]:
    """Look the configured models up in ``GET /v1/models``; returns ``{name: shutdown_date}``.

    A future shutdown date is a warning. A model that is already shut down, or not listed, is an
    error: with ``refuse_retired`` it raises :class:`PermanentError` so the process refuses to
    start (every call would be a 404 and every lot would fail). If ``/v1/models`` itself cannot
    be read, the check is skipped with a warning: OpenAI's availability is no start-up condition.
    """
    today = today or dt.datetime.now(dt.UTC).date()
    try:
        listed = {m.id: m async for m in client.models.list()}
    except (openai.OpenAIError, ValueError) as exc:
        log.warning("cannot list OpenAI models; start-up check skipped", extra={"error": repr(exc)})
        return {}
    found: dict[str, str | None] = {}
    for name in names:
        model = listed.get(name)
        shutdown = getattr(model, "shutdown_date", None) if model is not None else None
        found[name] = str(shutdown) if shutdown else None
        retired = model is None or (shutdown is not None and str(shutdown) <= today.isoformat())
        if retired:
            log.error("configured model is not served", extra={"model": name, "shutdown": shutdown})
            if refuse_retired:
                raise PermanentError(f"model {name} is not served (shutdown date {shutdown})")
        elif shutdown:
            log.warning(
                "configured model has a shutdown date",
                extra={"model": name, "shutdown_date": str(shutdown)},
            )
    return found
