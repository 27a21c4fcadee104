"""The platform-neutral core: links, downloads, metadata and the store. Never imports a frontend."""
