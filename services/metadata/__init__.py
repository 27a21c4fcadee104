"""Post, profile and hashtag metadata from EnsembleData and the TikTok Research API."""
