"""livecart's load tests: the locust show kit (show/), the benchmarks (bench/), and their shared helpers (support/)."""
