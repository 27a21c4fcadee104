"""Loopback emulators of every upstream, so the bot runs and is tested end to end with no internet."""
