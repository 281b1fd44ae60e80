"""The show's timeline, shared by the load shape (how many users of which kind) and the host (when the sale runs).

    0 ──── viewers and chatters ramp in ──── 30% sale opens, buyers rush in ──── 75% sale ends
      ──── 80% buyers leave ──── 92% everyone leaves (the ledger is final) ──── 100% the report

Every moment is a share of the show's length (--show-seconds, else --run-time, else 300 s), so a
12-second test and an hour-long rehearsal follow the same script.
"""

from __future__ import annotations

from dataclasses import dataclass

from locust import LoadTestShape

from loadtests.show_options import Show


@dataclass(frozen=True)
class ShowPlan:
    """When things happen, in seconds from the start of the show."""

    seconds: float

    @property
    def ramp_end(self) -> float:
        return 0.25 * self.seconds

    @property
    def sale_created(self) -> float:
        """The host announces the sale (a countdown) a little before it opens."""
        return max(0.0, self.sale_opens - min(10.0, 0.1 * self.seconds))

    @property
    def sale_opens(self) -> float:
        return 0.30 * self.seconds

    @property
    def sale_ends(self) -> float:
        return 0.75 * self.seconds

    @property
    def buyers_leave(self) -> float:
        return 0.80 * self.seconds

    @property
    def drain(self) -> float:
        return 0.92 * self.seconds


class ShowShape(LoadTestShape):
    """A live show: --users at the peak, of which --buyers arrive in a spike when the sale opens.

    With --shape flat it holds --users (every kind, by weight) for the show's length instead.
    Either way it ends by stopping every user, so the invariant report sees a final ledger.
    """

    use_common_options = True  # --users, --spawn-rate and --run-time size the show

    def tick(self) -> tuple[int, float] | tuple[int, float, list[type] | None] | None:
        assert self.runner is not None
        environment = self.runner.environment
        show = Show.of(environment.parsed_options)
        plan = ShowPlan(show.seconds)
        now = self.get_run_time()
        everyone = max(show.users * 10.0, 100.0)  # rate at which to stop everybody
        if now >= plan.seconds:
            return None
        if now >= plan.drain:
            return 0, everyone, None
        if show.shape == "flat":
            return show.users, show.spawn_rate, None
        selected = {cls.__name__: cls for cls in environment.user_classes}
        audience = [selected[name] for name in ("HostUser", "ViewerUser", "ChatterUser") if name in selected]
        buyers = [selected["BuyerUser"]] if "BuyerUser" in selected else []
        audience_count = show.users - show.buyers if buyers else show.users
        spike_rate = max(show.spawn_rate, show.buyers / max(1.0, 0.05 * plan.seconds))
        if now < plan.sale_opens or not buyers:
            return audience_count, show.spawn_rate, audience or None
        if now < plan.buyers_leave:
            return show.users, spike_rate, buyers
        return audience_count, spike_rate, buyers  # the newest users (the buyers) are the first to stop
