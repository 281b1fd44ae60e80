"""What the benchmarks and the tests share: the server launcher, /proc readings, tables, --smoke, loopback WebRTC."""
