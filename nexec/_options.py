"""Request options of exec and shell, as keyword arguments, and how they go on the wire."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

import msgspec

from schemas.api import RolloutRequest
from schemas.limits import DEFAULT_TIMEOUT_S, MAX_ROLLOUT_ANSWER_S

Rollout = RolloutRequest
"""A rollout's settings (``batch_size``, ``max_failures``, ``pause_s``), typed; the
``rollout=`` option takes one or a dict of the same fields (docs/jobs.md, "Rollouts")."""


class CommandOptions(TypedDict, total=False):
    """The keyword options of :meth:`nexec.Client.exec` and :meth:`nexec.Client.shell`.

    Keys:
        timeout: seconds before the command is killed (1-300; the controller's default 30).
        cwd: the working directory on the host (absolute).
        env: variables added to the agent's clean base environment.
        wait: ``True`` (default) until every host is decided; ``False`` to return at
            once with no results; N to return after at most N seconds (``?wait``).
        delivery_timeout: seconds a host has to acknowledge the job (0.1-60).
        idempotency_key: ``True`` (default) sends a new random key, so the client may
            retry the request after a 429 or 503; a string is sent as the key; ``False``
            sends none, and the request is then never retried.
        rollout: run a few hosts at a time, stop when hosts fail: a :data:`Rollout` or a
            dict of its fields (``batch_size`` required, ``max_failures``, ``pause_s``).
    """

    timeout: int
    cwd: str
    env: Mapping[str, str]
    wait: bool | int
    delivery_timeout: float
    idempotency_key: str | bool
    rollout: RolloutRequest | Mapping[str, int | str | float]


class CommandRequest(msgspec.Struct, frozen=True):
    """An exec or shell request as sent: body, query, headers; whether it may be retried."""

    body: bytes
    query: dict[str, str]
    headers: dict[str, str]
    retry: bool
    server_wait_s: float
    """The longest the controller may take to answer, by the request's own terms."""


def command_request(
    fields: dict[str, Any], options: CommandOptions, *, dry_run: bool = False
) -> CommandRequest:
    """The request for ``fields`` (``command``, and ``args`` for exec) with ``options``;
    with ``dry_run``, the ``?dry_run=true`` form (no idempotency key: nothing is recorded).

    Raises:
        TypeError: an option that is not one of :class:`CommandOptions`.
    """
    unknown = set(options) - set(CommandOptions.__annotations__)
    if unknown:
        raise TypeError(f"unknown option(s): {', '.join(sorted(unknown))}")
    body = dict(fields)
    for name in ("timeout", "cwd", "delivery_timeout"):
        if name in options:
            body[name] = options[name]
    if "env" in options:
        body["env"] = dict(options["env"])
    if "rollout" in options:
        body["rollout"] = _rollout(options["rollout"])
    command_s = float(options.get("timeout", DEFAULT_TIMEOUT_S))
    if "rollout" in options:  # the answer comes when the rollout ends, or at the bound
        command_s = float(MAX_ROLLOUT_ANSWER_S)
    query, server_wait_s = _wait_query(options.get("wait"), command_s)
    if dry_run:
        return CommandRequest(
            msgspec.json.encode(body), {**query, "dry_run": "true"}, {}, True, 0.0
        )
    key = idempotency_key(options.get("idempotency_key", True))
    headers = {} if key is None else {"Idempotency-Key": key}
    return CommandRequest(msgspec.json.encode(body), query, headers, key is not None, server_wait_s)


def _rollout(rollout: RolloutRequest | Mapping[str, int | str | float]) -> Any:
    """The body's ``rollout``: a struct as it is, a mapping as a dict (the controller
    checks the fields and answers 400 naming a wrong one)."""
    return rollout if isinstance(rollout, RolloutRequest) else dict(rollout)


def _wait_query(wait: bool | int | None, command_s: float) -> tuple[dict[str, str], float]:
    if wait is None or wait is True:
        return {}, command_s
    if wait is False:
        return {"wait": "false"}, 0.0
    return {"wait": str(wait)}, float(min(wait, command_s))


def idempotency_key(option: str | bool) -> str | None:
    """The ``Idempotency-Key`` to send: a new uuid4 for ``True``, none for ``False``."""
    if option is True:
        return str(uuid.uuid4())
    if option is False:
        return None
    return option


def page_query(**params: str | float | None) -> dict[str, str]:
    """Query parameters of a list request, leaving out those not given."""
    return {name: str(value) for name, value in params.items() if value is not None}


def exec_fields(command: str, args: Sequence[str]) -> dict[str, Any]:
    return {"command": command, "args": list(args)}
