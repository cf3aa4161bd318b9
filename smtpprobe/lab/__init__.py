"""Local servers that play scripted roles for tests, demos and benchmarks (loopback only)."""
