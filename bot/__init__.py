"""tiktok-bot: the chat frontends (Telegram, Discord) and the process entry point."""
