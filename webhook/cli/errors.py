"""What every command shares: the error a user must fix, and its exit code."""

EXIT_BAD_INPUT = 2


class InputError(Exception):
    """Input the user must fix; printed as one line, exit code 2."""
