"""The development harness, never shipped: the demo, the benchmarks, the local Airflow they use."""
