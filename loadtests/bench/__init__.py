"""The benchmarks: the hub's fan-out, flash-sale purchases, the video relay, and the suite that runs them."""
