"""What is read from the guest (/proc, kpageflags, balloon statistics) and the host (psutil,
smaps, QEMU's pagemap), and the parsers of those texts."""
