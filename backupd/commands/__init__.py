"""One module per sub-command; argparse stops here."""
