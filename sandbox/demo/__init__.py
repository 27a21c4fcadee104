"""The demo's scripted conversation: users of the emulated Telegram and Discord talk to the bot; a transcript.

The script only drives emulators and reads what reached the chats; the caller (`tiktok-bot demo`) runs the bot
against them and hands in a reader of the bot's usage log. Every step names the reply it expects; a step that
does not get it in time is a failure, so the demo doubles as an end-to-end check. `script` holds what both
halves share, `telegram` and `discord` the halves.
"""
