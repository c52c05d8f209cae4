"""kopf wiring for NodePolicy objects: every watch event goes to the operator's webhooks, which keep the
policies in force and register the node-policy webhook while one of them is restricted
(:class:`~k3c.reconcilers.webhooks.Webhooks`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from k3c.api import GROUP, NODE_POLICIES, VERSION
from k3c.reconcilers.webhooks import Webhooks


def register(registry: kopf.OperatorRegistry, webhooks: Webhooks) -> None:
    @kopf.on.event(GROUP, VERSION, NODE_POLICIES.plural, registry=registry)
    async def nodepolicy_event(event: Mapping[str, Any], **_: Any) -> None:
        await webhooks.policy_changed(event.get("type"), event["object"])
