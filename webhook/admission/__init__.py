"""Admission, pure: an AdmissionReview in, a decision and a JSONPatch out. No HTTP, no cluster.

`models` (the AdmissionReview wire), `podshape` (is the object shaped like a Pod), `podfacts` (what a pod
reveals), `config` (settings and annotation layers), `selection` (who is injected), `patch` (the
JSONPatch, by concern), `review` (the whole review: outcomes, never HTTP codes). Flask, gunicorn and the
kubernetes client are banned here (ruff TID251): the server and the CLI are the I/O edges.
"""
