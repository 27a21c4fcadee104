"""The Telegram frontend (aiogram 3)."""
