"""Media downloads: the multipart parser, the TTSave and TikTok-web backends, and the service."""
