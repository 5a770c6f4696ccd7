"""The one error type a user can cause: its message is one line naming the file, key or value."""


class UserError(ValueError):
    """Bad input, a bad flag or a bad file: `mgs-label` prints it on one line, exit code 2."""
