"""The shim's build-time side, never copied into pods: `payload` vendors wandb per CPython minor (at image
build), `install` lays the runtime shim (webhook/shim) and the payload out in a directory (the init
container, or the image for imageVolume delivery). Runs on Python 3.10+ in the webhook image.
"""
