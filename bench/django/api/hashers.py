import os

from django.contrib.auth.hashers import PBKDF2PasswordHasher


class PBKDF2SameAsBurrow(PBKDF2PasswordHasher):
    """Django's PBKDF2-SHA256 hasher at burrow's iteration count (Django
    6.0's default, 1,200,000; Django 5.2's is 1,000,000)."""

    iterations = int(os.environ.get("PBKDF2_ITERATIONS", "1200000"))
