"""Pipeline sources the node tier compiles with the real KFP SDK, inside its own venv."""
