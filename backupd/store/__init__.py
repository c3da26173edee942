"""Everything that turns export archives into a git history."""
