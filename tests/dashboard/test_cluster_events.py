"""`cluster_events`: what changed between two samples of the cluster, as events."""

from __future__ import annotations

from shoal.dashboard.cluster import ClusterView, MemberView, cluster_events


def member(name: str, health: str = "healthy") -> MemberView:
    return MemberView(
        name=name, voter=True, client_url=f"http://{name}", peer_addr=None, health=health
    )


def view(leader: str | None, term: int, *members: MemberView) -> ClusterView:
    return ClusterView(asked="n1", leader=leader, term=term, members=members, at=0.0)


def texts(before: ClusterView | None, after: ClusterView) -> list[str]:
    return [e["text"] for e in cluster_events(before, after, 5.0)]


def test_the_first_sample_says_who_leads() -> None:
    assert texts(None, view("n1", 3, member("n1"))) == ["n1 leads (term 3)"]
    assert texts(None, view(None, 3, member("n1"))) == []


def test_a_new_leader_and_a_lost_one() -> None:
    one = view("n1", 3, member("n1"), member("n2"))
    two = view("n2", 4, member("n1", "unreachable"), member("n2"))
    assert texts(one, two) == [
        "leader changed from n1 to n2 (term 4)",
        "n1 is unreachable",
    ]
    none = view(None, 5, member("n1", "unreachable"), member("n2", "no_leader"))
    assert texts(two, none) == ["no leader", "n2 is up but knows no leader"]


def test_members_joining_leaving_and_coming_back() -> None:
    one = view("n1", 3, member("n1"), member("n2", "unreachable"))
    two = view("n1", 3, member("n1"), member("n2"), member("n3", "unknown"))
    assert texts(one, two) == ["n2 is healthy", "n3 joined"]
    three = view("n1", 3, member("n1"), member("n3"))
    assert texts(two, three) == ["n2 left"]  # unknown -> healthy is no news


def test_an_unchanged_cluster_has_no_events_and_equal_views() -> None:
    one = view("n1", 3, member("n1"))
    again = ClusterView(asked="n1", leader="n1", term=3, members=(member("n1"),), at=9.0)
    assert texts(one, again) == [] and one == again  # `at` does not count
    event = cluster_events(None, one, 5.0)[0]
    assert event == {"kind": "leader", "text": "n1 leads (term 3)", "at": 5.0, "member": "n1"}
