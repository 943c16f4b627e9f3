"""The one error dev infrastructure raises: its message is the line a user sees."""


class DevError(Exception):
    """Something stopped local infrastructure from starting; the message says what to do."""
