"""Code the root ``jobs.yaml`` demo runs: a flaky HTTP service and a few python tasks."""
