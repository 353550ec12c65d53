"""The Ray a search starts in a process is the search's; the caller's own `ray.init` is theirs.
Checked on a stand-in for the `ray` module: no Ray processes."""

import signal
import sys
from types import SimpleNamespace

from search import ray_connection


class StandInRay:
    """The few calls ray_connection makes; each init is a new job, as in Ray."""

    def __init__(self):
        self.up, self.jobs, self.inits, self.shutdowns = False, 0, [], 0

    def is_initialized(self):
        return self.up

    def init(self, address=None, **options):
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(15))  # as ray.init does
        self.up, self.jobs = True, self.jobs + 1
        self.inits.append(address)

    def shutdown(self):
        self.up, self.shutdowns = False, self.shutdowns + 1

    def get_runtime_context(self):
        return SimpleNamespace(get_job_id=lambda: f"{self.jobs:08d}", get_node_id=lambda: "node-1",
                               gcs_address="10.0.0.5:6379" if self.inits[-1] != "local" else "127.0.0.1:1234")


def test_a_later_search_reuses_its_ray_moves_to_another_address_and_leaves_the_callers_alone(monkeypatch):
    ray = StandInRay()
    monkeypatch.setitem(sys.modules, "ray", ray)
    monkeypatch.setattr(ray_connection, "_started", {"connection": None, "address": None, "gcs": None})
    before = signal.getsignal(signal.SIGTERM)

    ray_connection.start_ray(None)
    ray_connection.start_ray(None)  # the next search of the notebook: the same local Ray
    assert ray.inits == ["local"] and not ray_connection.callers_ray()
    assert signal.getsignal(signal.SIGTERM) is before  # Ray's exit-at-once handler is not kept

    assert ray_connection.replacement_note("10.0.0.5:6379") == [
        "the local Ray, which an earlier search in this process started, is shut down to run this one on the "
        "cluster at 10.0.0.5:6379"]
    ray_connection.start_ray("auto")  # it ran on the local Ray without a word
    assert ray.shutdowns == 1 and ray.inits == ["local", "auto"]
    # `auto` found the cluster at 10.0.0.5:6379: naming it is the same cluster, not a reconnect
    assert ray_connection.replacement_note("10.0.0.5:6379") == [] and ray_connection.replacement_note("auto") == []
    ray_connection.start_ray("10.0.0.5:6379")
    assert ray.shutdowns == 1 and ray.inits == ["local", "auto"]

    ray.shutdown()
    ray.init(address="local")  # the caller's own, now: theirs, used as it is
    signal.signal(signal.SIGTERM, before)  # (the stand-in's handler, as the caller's ray.init would leave it)
    assert ray_connection.callers_ray() and ray_connection.replacement_note("10.0.0.9:6379") == []
    ray_connection.start_ray("10.0.0.9:6379")
    assert ray.shutdowns == 2 and ray.inits == ["local", "auto", "local"]
