"""Starting and driving guests: QEMU's argv and binary, the accelerator, the host set-up, SSH,
QMP balloon control, saved guests (restore instead of boot) and migration."""
