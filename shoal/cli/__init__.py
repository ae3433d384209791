"""The ``shoal`` command line: argument parsing and dispatch to subcommands only."""
