"""The long-running service: scheduler, lifecycle, systemd integration."""
