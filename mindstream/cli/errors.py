"""CLI errors carry the one line a user sees and the exit code that goes with it."""


class CliError(Exception):
    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code
