"""The runner: `elt run` as a DAG of tasks with retries, a lock, run history and logs."""
