"""The guest image: Debian packages fetched through apt, our own code, a reproducible initramfs."""
