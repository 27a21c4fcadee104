"""SQLite store: usage log, sent-media cache, chat settings and operator stats."""
