"""Exceptions that the CLI maps onto documented exit codes."""


class CamleakError(Exception):
    """Base class for errors camleak reports without a traceback."""

    exit_code = 70


class InputError(CamleakError):
    """An input could not be used; the message names it (exit 1)."""

    exit_code = 1


class CaseError(CamleakError):
    """The case file is missing, from another version, or busy (exit 1)."""

    exit_code = 1
