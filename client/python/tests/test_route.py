"""Where the client connects next (the same rules as the Rust client's
`Route`)."""

from ordo_client._core import AVOID_AFTER_FAILURE, Route, backoff, parse_servers


def test_backoff():
    assert [backoff(n) for n in range(6)] == [0.0, 0.05, 0.1, 0.2, 0.4, 0.5]
    assert backoff(100) == 0.5


def test_a_named_leader_is_tried_next_at_once():
    route = Route(["a:1", "b:1", "c:1"], 0)
    route.not_leader(True, "c:1")
    assert route.next(0.0) == ("c:1", 0.0)
    # A leader outside the list is followed too.
    route.not_leader(True, "d:1")
    assert route.next(0.0) == ("d:1", 0.0)


def test_an_avoided_leader_is_not_followed():
    route = Route(["a:1", "b:1", "c:1"], 0)
    route.avoid("b:1", 0.0)
    route.not_leader(True, "b:1")
    addr, wait = route.next(0.1)
    assert addr == "c:1" and wait <= 0.1
    # Once the avoidance is over, it is followed again.
    route.not_leader(True, "b:1")
    assert route.next(AVOID_AFTER_FAILURE + 0.1)[0] == "b:1"


def test_rotation_skips_avoided_servers_and_backs_off():
    route = Route(["a:1", "b:1", "c:1"], 0)
    route.failed("b:1", 0.0)
    addr, wait = route.next(0.0)
    assert addr == "c:1" and wait == 0.05
    route.failed("c:1", 0.0)
    route.failed("a:1", 0.0)
    # Everything avoided: plain rotation, longer waits.
    addr, wait = route.next(0.0)
    assert addr == "a:1" and wait == 0.2
    route.connected("a:1")
    route.lost(True)
    assert route.next(0.0)[1] == 0.0


def test_server_lists():
    assert parse_servers("a:1, b:2,") == ["a:1", "b:2"]
    assert parse_servers(["a:1", "b:2,c:3"]) == ["a:1", "b:2", "c:3"]
