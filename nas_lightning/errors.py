"""The one exception type for user mistakes: CLIs print it as one line and exit with status 2."""


class UserError(ValueError):
    """Bad input from a user (spec, file, argument): the message names the value and the choices."""
