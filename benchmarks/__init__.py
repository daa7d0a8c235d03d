"""Benchmarks for wandb-kfp-webhook (`make bench` / `python -m benchmarks.run`). Not tests: nothing here asserts."""
