"""Development tooling (benchmarks, profiling): not installed with the product."""
