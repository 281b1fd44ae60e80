"""The load shape of a show: how many users of which kind, moment by moment (the script is in plan.py)."""

from __future__ import annotations

from locust import LoadTestShape

from loadtests.show.options import Show
from loadtests.show.plan import ShowPlan


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
        everyone = max(100.0, show.users / max(1.0, 0.04 * plan.seconds))  # stop everybody well before the end
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
