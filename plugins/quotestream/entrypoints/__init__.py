"""The ways in (the CLI, what DAG files share, the Composer deploy), each building via bootstrap."""
