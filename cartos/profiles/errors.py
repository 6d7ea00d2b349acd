"""Errors raised while loading, validating or checking a device profile.

A broken profile must stop the cart before it opens any hardware, with one message that names
the file and every offending key, so the fix is an edit and not a debugging session.
"""

from __future__ import annotations

from cartos.errors import CartosError


class ProfileError(CartosError):
    """A profile is missing, unreadable, invalid, or cannot run on this machine."""


class ProfileNotFoundError(ProfileError):
    """No profile file answers to the given name or path."""


class FootprintExceededError(ProfileError):
    """The measured memory footprint does not fit the profile's budget.

    A distinct exit code (3) lets a deployment script tell "this profile does not fit" apart
    from "this profile is broken" (2).
    """

    exit_code = 3
