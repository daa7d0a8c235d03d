"""The webhook's TLS certificates: `checks` (every x509 test, once), `generate` (a private CA and serving
certificates, dev files), `rotation` (the pure plan of what a self-managed Secret should hold) and `sync`
(the loop that keeps the Secret, the served files and the webhook configuration's caBundle in line).
"""
