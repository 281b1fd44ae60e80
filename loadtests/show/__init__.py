"""The show rehearsal: a locust scenario of viewers, chatters, buyers and a host, and its invariant report."""
