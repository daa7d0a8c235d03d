"""The runtime shim, importable in component pods as `wandb_kfp_shim` (stdlib and wandb only).

sitecustomize (bootstrap/) calls `activate.activate_v1()` / `activate_v2()` in a KFP component's own
process; see docs/shim.md for what gets recorded.
"""
