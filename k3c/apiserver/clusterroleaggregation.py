"""ClusterRole aggregation: a ClusterRole with an ``aggregationRule`` gets the rules of the ClusterRoles it selects.

What kube-controller-manager's clusterrole-aggregation controller does, run by the server itself: for each
aggregated ClusterRole, the rules of every other ClusterRole matching one of its ``clusterRoleSelectors``
(in name order, each rule once) replace its own. Aggregation chains (``admin`` selects ``edit``, which
selects ``view``), so a round repeats until nothing changes. The rules are written through the API, as the
controller's update is, with its field manager.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from k3c.apiserver import errors
from k3c.apiserver.rbac import GROUP
from k3c.apiserver.rest import ResourceAPI, WriteOptions
from k3c.apiserver.selectors import from_label_selector_dict
from k3c.apiserver.subresources import User

log = logging.getLogger(__name__)

PREFIX = f"/{GROUP}/clusterroles/"
MANAGER = "clusterrole-aggregation-controller"
#: who the writes are made as (kube's controller runs as this ServiceAccount)
CONTROLLER = User("system:serviceaccount:kube-system:clusterrole-aggregation-controller",
                  ("system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"))
_MAX_ROUNDS = 10  # deeper chains than this settle on the next write


def aggregated_rules(role: dict[str, Any], roles: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rules ``role``'s aggregationRule selects from ``roles``."""
    out: list[dict[str, Any]] = []
    by_name = sorted(roles, key=lambda r: r["metadata"]["name"])
    for selector_doc in (role.get("aggregationRule") or {}).get("clusterRoleSelectors") or []:
        try:
            selector = from_label_selector_dict(selector_doc)
        except ValueError as err:
            log.warning("ClusterRole %s: bad clusterRoleSelector: %s", role["metadata"]["name"], err)
            continue
        for other in by_name:
            if other["metadata"]["name"] == role["metadata"]["name"]:
                continue
            if selector.matches(other["metadata"].get("labels")):
                out.extend(rule for rule in other.get("rules") or [] if rule not in out)
    return out


class ClusterRoleAggregation:
    """One round of the controller: every aggregated ClusterRole brought up to date."""

    def __init__(self, api: ResourceAPI) -> None:
        self.api = api
        rtype = api.registry.lookup(GROUP, "v1", "clusterroles")
        assert rtype is not None
        self.rtype = rtype

    @property
    def prefixes(self) -> tuple[str, ...]:
        return (self.rtype.prefix(),)

    async def sync(self) -> None:
        for _round in range(_MAX_ROUNDS):
            if not await self._one_pass():
                return

    async def _one_pass(self) -> bool:
        """Whether any role changed (its dependents then need another pass)."""
        roles = [entry.obj for _key, entry in self.api.store.list_current(self.rtype.prefix())]
        changed = False
        for role in roles:
            if not role.get("aggregationRule"):
                continue
            rules = aggregated_rules(role, roles)
            if rules == list(role.get("rules") or []):
                continue
            obj = copy.deepcopy(role)  # (stored objects are shared)
            obj["rules"] = rules
            try:
                await self.api.update(self.rtype, None, role["metadata"]["name"], obj,
                                      WriteOptions(field_manager=MANAGER, user=CONTROLLER))
            except errors.APIError as err:  # written meanwhile: the write wakes the next round
                log.info("ClusterRole %s not aggregated yet: %s", role["metadata"]["name"], err.message)
                continue
            changed = True
        return changed
