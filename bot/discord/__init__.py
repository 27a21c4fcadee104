"""The Discord frontend (discord.py 2): links to media, slash commands, settings and stats."""
